"""A model's shape as Megatron-LM arguments, and back into a ModelSpec.

Flag names and defaults: Megatron-LM ``megatron/training/arguments.py`` and ``TransformerConfig``
(https://github.com/NVIDIA/Megatron-LM/blob/main/megatron/training/arguments.py). Megatron adds biases to linear
layers unless ``--disable-bias-linear``, trains with dropout 0.1 unless told otherwise, and marks MoE layers with
``--moe-layer-freq`` (an int N: every N-th layer; or a Python list expression such as ``([0]*3+[1]*58)``).
"""

from __future__ import annotations

import ast

from fathom.errors import FathomInputError
from fathom.export.cmdline import Options
from fathom.specs.model import MLASpec, ModelSpec, MoESpec

_POSITION = {"rope": "rope", "learned": "learned_absolute", "none": "none"}
BARE_MODEL_FLAGS = (
    "--group-query-attention",
    "--swiglu",
    "--untie-embeddings-and-output-weights",
    "--disable-bias-linear",
    "--add-qkv-bias",
    "--qk-layernorm",
    "--multi-latent-attention",
    "--moe-shared-expert-gate",
    "--use-rope-scaling",
)


def _moe_pattern(spec: ModelSpec) -> list[int]:
    moe = spec.moe
    rest = spec.num_layers - moe.first_dense_layers
    pattern = [0] * spec.num_layers
    for i in range(moe.layer_interval - 1, rest, moe.layer_interval):
        pattern[moe.first_dense_layers + i] = 1
    return pattern


def _pattern_expr(pattern: list[int]) -> str:
    """Run-length form Megatron evaluates: ``([0]*3+[1]*58)``."""
    runs: list[tuple[int, int]] = []
    for bit in pattern:
        if runs and runs[-1][0] == bit:
            runs[-1] = (bit, runs[-1][1] + 1)
        else:
            runs.append((bit, 1))
    return "(" + "+".join(f"[{b}]*{n}" for b, n in runs) + ")"


def _rope_flags(spec: ModelSpec, notes: dict[str, str]) -> list[tuple[str, object]]:
    """RoPE base and Llama 3.1 scaling from the spec: Megatron-LM's defaults (base 10000, no scaling) are not
    Llama 3's (500000, llama3 scaling with factor 8)."""
    if spec.position_embedding != "rope":
        return []
    f: list[tuple[str, object]] = []
    if spec.rope_theta is not None:
        f.append(("--rotary-base", round(spec.rope_theta)))  # argparse type=int
        if not float(spec.rope_theta).is_integer():
            notes["model.rope_theta"] = f"Megatron-LM's --rotary-base takes an integer; wrote {round(spec.rope_theta)}"
    if spec.rope_scaling == "llama3":  # Megatron-Core's llama3 scaling fixes low/high factors 1, 4 and 8192 tokens
        f += [("--use-rope-scaling", None), ("--rope-scaling-factor", spec.rope_scaling_factor)]
    elif spec.rope_scaling != "none":  # yarn, longrope, linear, dynamic: not written, so say so
        notes["model.rope_scaling"] = (
            f"{spec.rope_scaling} RoPE scaling (factor {spec.rope_scaling_factor:g}) is not written: this export only "
            "writes Megatron-LM's llama3 scaling; set the model's RoPE scaling in Megatron by hand"
        )
    return f


def model_flags(spec: ModelSpec, seq_len: int) -> tuple[list[tuple[str, object]], dict[str, str]]:
    """Megatron flags for the shape, and ``model.<field>: reason`` notes for what Megatron cannot build."""
    f: list[tuple[str, object]] = [
        ("--num-layers", spec.num_layers),
        ("--hidden-size", spec.hidden_size),
        ("--ffn-hidden-size", spec.ffn_size),
        ("--num-attention-heads", spec.num_heads),
    ]
    if spec.head_dim * spec.num_heads != spec.hidden_size:
        f.append(("--kv-channels", spec.head_dim))
    if spec.num_kv_heads != spec.num_heads:
        f += [("--group-query-attention", None), ("--num-query-groups", spec.num_kv_heads)]
    f += [("--seq-length", seq_len), ("--max-position-embeddings", spec.max_seq_len), ("--vocab-size", spec.vocab_size)]
    f.append(("--normalization", "RMSNorm" if spec.norm_type == "rmsnorm" else "LayerNorm"))
    notes: dict[str, str] = {}
    if spec.position_embedding in _POSITION:
        f.append(("--position-embedding-type", _POSITION[spec.position_embedding]))
    else:
        notes["model.position_embedding"] = f"Megatron-LM has no {spec.position_embedding} positions; wrote rope"
        f.append(("--position-embedding-type", "rope"))
    f += _rope_flags(spec, notes)
    if spec.gated_mlp:
        f.append(("--swiglu", None))
    if not spec.tied_embeddings:
        f.append(("--untie-embeddings-and-output-weights", None))
    if not (spec.mlp_bias or spec.attn_out_bias):
        f.append(("--disable-bias-linear", None))
    elif spec.mlp_bias != spec.attn_out_bias:
        notes["model.mlp_bias"] = "Megatron-LM switches all linear biases together; kept them"
    if spec.qkv_bias:
        f.append(("--add-qkv-bias", None))
    if spec.qk_norm:
        f.append(("--qk-layernorm", None))
    dropout = 0.1 if spec.hidden_dropout else 0.0
    f += [("--hidden-dropout", dropout), ("--attention-dropout", dropout)]
    if spec.sliding_window:
        f.append(("--window-size", f"({spec.sliding_window},0)"))
        if spec.num_sliding_window_layers != spec.num_layers:
            notes["model.sliding_window"] = "Megatron-LM's --window-size applies to every layer, not some"
    for name in ("parallel_block", "embedding_norm", "lm_head_bias"):
        if getattr(spec, name):
            notes[f"model.{name}"] = "not expressible as a Megatron-LM GPT argument"
    if spec.mla:
        m = spec.mla
        f += [
            ("--multi-latent-attention", None),
            ("--kv-lora-rank", m.kv_lora_rank),
            ("--qk-head-dim", m.qk_nope_head_dim),
            ("--qk-pos-emb-head-dim", m.qk_rope_head_dim),
            ("--v-head-dim", m.v_head_dim),
        ]
        if m.q_lora_rank:
            f.append(("--q-lora-rank", m.q_lora_rank))
    if spec.moe:
        m = spec.moe
        f += [
            ("--num-experts", m.num_experts),
            ("--moe-router-topk", m.top_k),
            ("--moe-ffn-hidden-size", m.expert_ffn_size),
        ]
        if m.num_shared_experts:
            f.append(("--moe-shared-expert-intermediate-size", m.num_shared_experts * m.shared_ffn_size))
            if m.shared_expert_gate:
                f.append(("--moe-shared-expert-gate", None))
        if m.first_dense_layers or m.layer_interval > 1:
            f.append(("--moe-layer-freq", _pattern_expr(_moe_pattern(spec))))
    return f, notes


def _eval_pattern(expr: str, num_layers: int, source: str) -> list[int]:
    """Megatron's --moe-layer-freq: an int N (layer i is MoE when i % N == 0) or a list expression of 0/1."""
    try:
        return [int(i % int(expr) == 0) for i in range(num_layers)]
    except ValueError:
        pass

    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.List):
            return [ev(e) for e in node.elts]
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult | ast.Add):
            a, b = ev(node.left), ev(node.right)
            return a * b if isinstance(node.op, ast.Mult) else a + b
        raise ValueError(node)

    try:
        pattern = ev(ast.parse(expr.strip(), mode="eval"))
    except (SyntaxError, ValueError, TypeError):
        raise FathomInputError(f"{source}: --moe-layer-freq {expr!r} is not an int or a list expression") from None
    if not isinstance(pattern, list) or len(pattern) != num_layers:
        raise FathomInputError(f"{source}: --moe-layer-freq must list {num_layers} layers")
    return pattern


def _moe_from_pattern(pattern: list[int]) -> tuple[int, int]:
    """(first dense layers, interval) of fathom's layout ``[0]*first`` then every interval-th layer; ValueError when
    the pattern has another shape."""
    ones = [i for i, bit in enumerate(pattern) if bit]
    if not ones:
        raise ValueError("no MoE layer")
    interval = ones[1] - ones[0] if len(ones) > 1 else 1
    first = ones[0] - (interval - 1)
    expect = [0] * max(first, 0) + [int((i + 1) % interval == 0) for i in range(len(pattern) - max(first, 0))]
    if first < 0 or expect != pattern:
        raise ValueError("irregular MoE layer pattern")
    return first, interval


def spec_from_options(o: Options, name: str) -> ModelSpec | None:
    """The model the arguments describe, or None when they lack the shape (no --num-layers / --vocab-size)."""
    if not o.has("--num-layers", "--hidden-size", "--num-attention-heads", "--vocab-size"):
        return None
    n = o.number
    if None in (n("--num-layers"), n("--hidden-size"), n("--num-attention-heads"), n("--vocab-size")):
        missing = [
            f for f in ("--num-layers", "--hidden-size", "--num-attention-heads", "--vocab-size") if not o.has(f)
        ]
        raise FathomInputError(f"{o.source}: the model shape needs {', '.join(missing)} (or give --model)")
    layers, hidden, heads = n("--num-layers"), n("--hidden-size"), n("--num-attention-heads")
    bias = not o.flag("--disable-bias-linear")
    position = {v: k for k, v in _POSITION.items()}.get(o.text("--position-embedding-type", default="learned_absolute"))
    fields: dict = dict(
        name=name,
        family="megatron-import",
        num_layers=layers,
        hidden_size=hidden,
        num_heads=heads,
        num_kv_heads=n("--num-query-groups", default=heads) if o.flag("--group-query-attention") else heads,
        head_dim=n("--kv-channels", default=hidden // heads),
        ffn_size=n("--ffn-hidden-size", default=4 * hidden),
        gated_mlp=o.flag("--swiglu"),
        vocab_size=n("--vocab-size"),
        tied_embeddings=not o.flag("--untie-embeddings-and-output-weights"),
        max_seq_len=n("--max-position-embeddings", default=n("--seq-length", default=4096)),
        norm_type="rmsnorm" if o.text("--normalization", default="LayerNorm") == "RMSNorm" else "layernorm",
        qk_norm=o.flag("--qk-layernorm"),
        qkv_bias=o.flag("--add-qkv-bias") or bias,
        attn_out_bias=bias,
        mlp_bias=bias,
        position_embedding=position or "rope",
        hidden_dropout=n("--hidden-dropout", default=0.1, kind=float) > 0,
        rope_theta=n("--rotary-base", default=None, kind=float),
        source=f"imported from {o.source}",
    )
    if o.flag("--use-rope-scaling"):
        fields.update(rope_scaling="llama3", rope_scaling_factor=n("--rope-scaling-factor", default=8.0, kind=float))
    if window := o.text("--window-size"):
        size = int(window.strip("()[] ").split(",")[0])
        fields.update(sliding_window=size, num_sliding_window_layers=layers if size > 0 else 0)
    if o.flag("--multi-latent-attention"):
        fields["mla"] = MLASpec(
            q_lora_rank=n("--q-lora-rank", default=0),
            kv_lora_rank=n("--kv-lora-rank", default=512),
            qk_nope_head_dim=n("--qk-head-dim", default=128),
            qk_rope_head_dim=n("--qk-pos-emb-head-dim", default=64),
            v_head_dim=n("--v-head-dim", default=128),
        )
    if experts := n("--num-experts"):
        pattern = _eval_pattern(o.text("--moe-layer-freq", default="1"), layers, o.source)
        try:
            first, interval = _moe_from_pattern(pattern)
        except ValueError:
            raise FathomInputError(
                f"{o.source}: --moe-layer-freq: fathom models MoE layers as dense-first then every n-th layer"
            ) from None
        shared = n("--moe-shared-expert-intermediate-size", default=0)
        ffn = n("--moe-ffn-hidden-size", default=fields["ffn_size"])
        fields["moe"] = MoESpec(
            num_experts=experts,
            top_k=n("--moe-router-topk", default=2),
            expert_ffn_size=ffn,
            num_shared_experts=1 if shared else 0,
            shared_expert_ffn_size=shared,
            shared_expert_gate=o.flag("--moe-shared-expert-gate"),
            first_dense_layers=first,
            layer_interval=interval,
        )
    return ModelSpec.from_dict(fields)
