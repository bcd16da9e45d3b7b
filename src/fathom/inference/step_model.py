"""Time of one inference-engine iteration over a mixed batch of prefill chunks and decode tokens.

The work of an iteration splits into parts that depend on different batch statistics:
- token-linear work (QKV/output projections, MLP or MoE experts, norms, activations, TP all-reduces): a
  function of the number of new tokens ``T`` only. It is tabulated once per deployment over ``T`` with the
  same kernel models as training (``fathom.costmodel``), so a call is one interpolation. At small ``T`` these
  GEMMs are bound by reading the weights (why weight-only int4/int8 helps decode, MARLIN, Frantar et al.
  2024); at large ``T`` by compute.
- prefill attention: FlashAttention over each chunk's queries against its cached context plus itself,
  ``sum P_i (C_i + P_i/2)`` query-key pairs, at the kernel class's rate on the device;
- decode attention: reads every decoding request's KV cache once (paged attention, Kwon et al. 2023),
  ``sum D_j`` tokens of KV, bandwidth-bound;
- the LM head over the sequences that emit a token.
Pipeline stages run one after another within an iteration (no micro-batch interleaving); the host issues
ops in eager mode (``cuda_graphs=False``) and the iteration cannot run faster than that; an eager engine's host work
per iteration and per sequence adds to it (``fathom.inference.host``).
"""

from __future__ import annotations

import numpy as np

from fathom.costmodel.collectives import all_reduce_s, p2p_s
from fathom.costmodel.kernels import decode_work_s, eager_elementwise_s, linear_s, memory_bound_s
from fathom.errors import FathomInputError
from fathom.inference.host import host_seq_s, host_step_s, issue_op_s
from fathom.inference.memory import WEIGHT_BYTES, replica_memory
from fathom.inference.overlap import NanoBatchOverlap
from fathom.inference.shared_prefix import per_sequence_prefix_attention_s, prefix_groups, shared_prefix_attention_s
from fathom.specs.hardware import GIB, Cluster
from fathom.specs.model import ModelSpec
from fathom.specs.serving import ServingPlan
from fathom.training.eager import eager_decode_head_ops, eager_decode_ops, eager_layer

_GRID = np.unique(np.concatenate([np.arange(1, 4097), np.geomspace(4097, 2**22, 240).round()]))
ACT_BYTES = 2.0


def _math_precision(weight_dtype: str) -> str:
    return "fp8" if weight_dtype == "fp8" else ("fp16" if weight_dtype == "fp16" else "bf16")


def context_limit(model: ModelSpec, plan: ServingPlan) -> int:
    """Longest prompt + output a replica accepts: the engine's ``max_model_len`` when set, else the model's own."""
    if plan.max_model_len is None:
        return model.max_seq_len
    if plan.max_model_len > model.max_seq_len and model.position_embedding == "learned":
        raise FathomInputError(
            f"max_model_len={plan.max_model_len} exceeds {model.name}'s {model.max_seq_len} learned positions"
        )
    return plan.max_model_len


class InferenceStepModel:
    """The ``StepCostModel`` of one replica (see ``fathom.serving.cost``)."""

    def __init__(self, model: ModelSpec, cluster: Cluster, plan: ServingPlan) -> None:
        self.model, self.cluster, self.plan = model, cluster, plan
        self.memory = replica_memory(model, cluster.device, plan)
        self.kv_capacity_tokens = self.memory.kv_capacity_tokens
        self.block_size = plan.block_size
        self.max_context = context_limit(model, plan)
        self.kv_bytes_per_token = self.memory.kv_bytes_per_token  # each GPU moves its share in parallel
        self.host_link_bytes_per_s = cluster.device.host_link_bytes_per_s
        host_share = cluster.system.host_memory_gib * GIB / cluster.system.gpus_per_node  # this GPU's share
        self.host_swap_tokens = int(min(plan.swap_space_gib * GIB, host_share) // self.kv_bytes_per_token)
        self.layers = -(-model.num_layers // plan.pp)
        self._linear = self._token_linear_table()
        self._head = self._lm_head_table()
        self._linear_dense = self._linear[:4096].tolist()  # _GRID starts 1, 2, ..., 4096
        self._head_dense = self._head[:4096].tolist()
        self._attention_constants()
        self._overlap = NanoBatchOverlap(self, _GRID, ACT_BYTES) if plan.nano_batches > 1 else None

    # ---- token-linear work, tabulated over the number of new tokens ------------------------------------
    def _layer_linear_s(self, t: np.ndarray) -> np.ndarray:
        m, p, dev = self.model, self.plan, self.cluster.device
        prec, w = _math_precision(p.weight_dtype), WEIGHT_BYTES[p.weight_dtype]
        h, tp = m.hidden_size, float(p.tp)
        kv_local = max(m.num_kv_heads / tp, 1.0)
        gemm = lambda n, k, batch=1.0, tokens=t: linear_s(dev, prec, tokens, n, k, batch, weight_bytes=w)  # noqa: E731
        attn = gemm((m.num_heads / tp + 2 * kv_local) * m.head_dim, h) + gemm(h, m.num_heads * m.head_dim / tp)
        if m.mla is not None:
            a = m.mla
            qk = a.qk_nope_head_dim + a.qk_rope_head_dim
            q = (
                gemm(m.num_heads * qk / tp, h)
                if not a.q_lora_rank
                else gemm(a.q_lora_rank, h) + gemm(m.num_heads * qk / tp, a.q_lora_rank)
            )
            attn = (
                q
                + gemm(a.kv_lora_rank + a.qk_rope_head_dim, h)
                + gemm(m.num_heads * (a.qk_nope_head_dim + a.v_head_dim) / tp, a.kv_lora_rank)
                + gemm(h, m.num_heads * a.v_head_dim / tp)
            )
        up = 2 if m.gated_mlp else 1
        dense = gemm(up * m.ffn_size / tp, h) + gemm(h, m.ffn_size / tp)
        mlp, ffn_tokens = dense, t * m.ffn_size / tp
        if m.moe is not None:
            mlp, ffn_tokens = self._moe_s(t, gemm)
        comm = 2.0 * all_reduce_s(self.cluster.system, t * h * ACT_BYTES, p.tp, 1)
        elementwise = (m.norms_per_layer * 2 + 6) * t * h * ACT_BYTES + (up + 1) * ffn_tokens * ACT_BYTES
        if dev.runs_eager and m.moe is None and m.mla is None and p.tp == 1:  # eager PyTorch's unfused passes
            elementwise = eager_layer(m).traffic_per_token * t * ACT_BYTES  # fathom.training.eager
            return attn + mlp + comm + eager_elementwise_s(dev, prec, elementwise, m.norms_per_layer + 3)
        return attn + mlp + comm + memory_bound_s(dev, elementwise, m.norms_per_layer + 3)

    def _moe_s(self, t: np.ndarray, gemm) -> tuple[np.ndarray, np.ndarray]:
        """Routed experts: only the experts some token picked are read; shared experts act like a dense MLP."""
        m, p = self.model, self.plan
        moe, h = m.moe, m.hidden_size
        local = moe.num_experts / p.ep
        tokens_here = t * moe.top_k * local / moe.num_experts  # token copies this GPU's experts receive
        active = np.maximum(local * (1.0 - (1.0 - moe.top_k / moe.num_experts) ** t), 1.0)
        per_expert = tokens_here / active
        width = moe.expert_ffn_size * p.ep / p.tp  # ep divides tp: the tp/ep ranks of an EP rank split each expert
        up = 2 if m.gated_mlp else 1
        routed = gemm(up * width, h, active, per_expert) + gemm(h, width, active, per_expert)
        shared = 0.0
        if moe.num_shared_experts:
            sw = moe.shared_ffn_size * moe.num_shared_experts / p.tp
            shared = gemm(up * sw, h) + gemm(h, sw)
        frac = m.num_moe_layers / m.num_layers
        dense = gemm(up * m.ffn_size / p.tp, h) + gemm(h, m.ffn_size / p.tp)
        return frac * (routed + shared) + (1 - frac) * dense, tokens_here * width

    def _token_linear_table(self) -> np.ndarray:
        t = _GRID.astype(float)
        per_stage = self.layers * self._layer_linear_s(t)
        hops = (self.plan.pp - 1) * p2p_s(self.cluster.system, t * self.model.hidden_size * ACT_BYTES, self.plan.tp)
        return self.plan.pp * per_stage + hops

    def _lm_head_table(self) -> np.ndarray:
        m, p = self.model, self.plan
        t = _GRID.astype(float)
        v = m.vocab_size / p.tp
        prec = _math_precision(p.weight_dtype)
        logits = linear_s(self.cluster.device, prec, t, v, m.hidden_size, weight_bytes=WEIGHT_BYTES[p.weight_dtype])
        sampling = memory_bound_s(self.cluster.device, 3 * t * v * 4.0, 3)  # fp32 softmax, top-k/p, argmax
        return logits + sampling

    # ---- context-dependent attention -----------------------------------------------------------------
    def _attention_constants(self) -> None:
        m, p, dev = self.model, self.plan, self.cluster.device
        heads = m.num_heads / p.tp
        dims = (m.mla.qk_nope_head_dim + m.mla.qk_rope_head_dim + m.mla.v_head_dim) if m.mla else 2 * m.head_dim
        rate = dev.peak_flops_per_s("bf16") * dev.efficiency.attention_pass_fraction(p.attention)  # forward only
        # seconds per query-key pair over all layers of all stages (flops = 2 * pairs * heads * dims)
        self._prefill_pair_s = self.layers * p.pp * 2.0 * heads * dims / rate
        bw = dev.mem_bw_bytes_per_s * dev.efficiency.memory
        kv_token_bytes = self.memory.kv_bytes_per_token / self.layers  # one layer, this GPU
        self._kv_read_s = self.layers * p.pp * kv_token_bytes / bw
        # A decode's cost per KV token: its read, or where a profile measured decode attention's rate (a CPU), the
        # query-key work of every head if that takes longer
        work = decode_work_s(dev, _math_precision(p.weight_dtype), self.layers * p.pp * 2.0 * heads * dims)
        self._decode_key_s = max(self._kv_read_s, float(work))
        self._window = float(m.sliding_window or 0) if p.sliding_window else 0.0
        self._sw_frac = m.num_sliding_window_layers / m.num_layers
        launch = dev.efficiency.kernel_launch_us * 1e-6
        ops_per_layer = 12 + 2 * (p.tp > 1) + (6 if m.moe else 0)
        head_ops = 0  # fused engines: the head's few kernels are within the per-layer allowance
        if dev.runs_eager and m.moe is None and m.mla is None and p.tp == 1:  # eager PyTorch (a CPU, a profiled GPU)
            fused = not dev.ops_run_inline  # a GPU's fused norms and dropout (fathom.training.eager)
            ops_per_layer = eager_decode_ops(m, p.weight_dtype != "fp32", fused)
            head_ops = eager_decode_head_ops(m, p.weight_dtype != "fp32", fused)
        ops = self.layers * p.pp * ops_per_layer + head_ops
        host_s = ops * dev.efficiency.host_op_us * 1e-6
        issue_s = ops * issue_op_s(p, dev)
        # Every step pays the attention kernels' launches; a device that runs ops inline (a CPU) also pays the
        # host's per-op cost, CUDA graphs or not. A GPU's issue cost is a floor, removed by CUDA graphs; the host's
        # per-iteration and per-sequence work adds to the step (fathom.inference.host).
        self._fixed_s = self.layers * p.pp * 2 * launch + (host_s if dev.ops_run_inline else 0.0)
        self._host_floor_s = 0.0 if (p.cuda_graphs or dev.ops_run_inline) else issue_s
        self._host_step_s, self._host_seq_s = host_step_s(p), host_seq_s(p)
        # An eager iteration runs slower than its parts timed alone, where a profile measured it (bench_decode):
        # on a device that runs its ops inline (a CPU) the kernels in a row; on a GPU the host issuing them, which
        # bounds an eager decode step of a small batch (CUDA graphs remove that floor, and the scale with it)
        scale = dev.efficiency.serving_in_situ.get(_math_precision(p.weight_dtype), 1.0)
        self._in_situ = scale if dev.ops_run_inline else 1.0
        self._host_floor_s *= 1.0 if dev.ops_run_inline else scale

    def _keys(self, context: np.ndarray) -> np.ndarray:
        if not self._window:
            return context
        return (1 - self._sw_frac) * context + self._sw_frac * np.minimum(context, self._window)

    def _table(self, table: np.ndarray, dense: list[float], tokens: float) -> float:
        """Tabulated time at ``tokens``: a list lookup for whole numbers in the dense range (the hot path)."""
        i = int(tokens)
        if i == tokens and i <= len(dense):
            return dense[i - 1]
        return float(np.interp(tokens, _GRID, table))

    def step_time_s(self, prefill_tokens, prefill_context, decode_context, shared_prefix=None) -> float:
        """Seconds of one iteration; arrays as in ``fathom.serving.cost``.

        ``shared_prefix``: optional ``(prefix_len, sequences)`` groups of the decoding requests whose contexts
        begin with a prefix they share (see ``decode_attention_s``). Called once per simulated iteration, so it
        avoids numpy work on empty arrays and looks tables up in Python lists.
        """
        n_decode = len(decode_context)
        keys = 0.0  # KV tokens the decodes read, in units of one full-attention token
        if n_decode:
            d = decode_context if isinstance(decode_context, np.ndarray) else np.asarray(decode_context, dtype=float)
            if shared_prefix is None:
                keys = float(d.sum() if not self._window else self._keys(d).sum())
            else:
                attn = self.decode_attention_s(d, shared_prefix)
                keys = attn / self._decode_key_s if self._decode_key_s > 0 else 0.0
        return self.step_time_sum_s(prefill_tokens, prefill_context, n_decode, keys)

    @property
    def prices_context_sum(self) -> bool:
        """Whether decode attention depends on the decode contexts only through their sum (no sliding window), so
        the simulator may call ``step_time_sum_s`` with the sum it keeps instead of the contexts."""
        return not self._window

    def step_time_sum_s(self, prefill_tokens, prefill_context, n_decode: int, context_sum: float) -> float:
        """``step_time_s`` for ``n_decode`` decodes whose contexts sum to ``context_sum`` (``prices_context_sum``;
        ``step_time_s`` itself passes the KV tokens the decodes read, sliding windows and shared prefixes applied)."""
        n_prefill = len(prefill_tokens)
        prefill_sum = prefill_attn = 0.0
        if n_prefill:  # a handful of chunks: plain Python beats numpy's per-call overhead here
            w, frac = self._window, self._sw_frac
            pairs = keys_sum = 0.0
            for n, c in zip(prefill_tokens, prefill_context, strict=True):
                k = (1 - frac) * c + frac * min(c, w) if w else c
                prefill_sum += n
                keys_sum += k
                pairs += n * (k + n / 2.0)
            prefill_attn = max(pairs * self._prefill_pair_s, keys_sum * self._kv_read_s)
        new_tokens = prefill_sum + n_decode
        if new_tokens <= 0:
            return 0.0
        dense = self._linear_dense
        i = int(new_tokens)
        linear = dense[i - 1] if i == new_tokens and i <= 4096 else self._table(self._linear, dense, new_tokens)
        seqs = n_decode + n_prefill  # logits for each sequence's last token
        head = self._head_dense[seqs - 1] if seqs <= 4096 else self._table(self._head, self._head_dense, seqs)
        decode_attn = context_sum * self._decode_key_s
        gpu = linear + head + prefill_attn + decode_attn + self._fixed_s
        if self._overlap is not None:  # NanoFlow nano-batches (fathom.inference.overlap)
            gpu = self._overlap.step_s(linear, head, prefill_attn, decode_attn, new_tokens) + self._fixed_s
        gpu *= self._in_situ
        host = self._host_step_s + self._host_seq_s * seqs
        return (gpu if gpu > self._host_floor_s else self._host_floor_s) + host

    # ---- decode batches whose sequences share prefixes (Hydragen) --------------------------------------------
    def decode_attention_s(self, decode_context, shared_prefix=()) -> float:
        """Seconds of decode attention for contexts ``decode_context`` of which ``shared_prefix`` groups
        ``(prefix_len, sequences)`` share a leading prefix. Without ``plan.shared_prefix_attention`` each sequence
        reads its whole context (paged attention stores a shared prefix once but reads it per sequence); with
        it, each group's prefix is attended to once for the whole group (``fathom.inference.shared_prefix``).
        Sliding-window layers read at most the window per sequence either way."""
        d = np.asarray(decode_context, dtype=float)
        lengths, counts = prefix_groups(shared_prefix)
        if counts.sum() > d.size:
            raise FathomInputError(f"shared_prefix: {int(counts.sum())} sequences in groups, {d.size} decoding")
        full_share = 1.0 - (self._sw_frac if self._window else 0.0)
        windowed = (d.size and self._window) and self._sw_frac * float(np.minimum(d, self._window).sum())
        suffix = float(d.sum() - (lengths * counts).sum())
        if self.plan.shared_prefix_attention:
            prefix = shared_prefix_attention_s(lengths, counts, self._kv_read_s, self._prefill_pair_s)
        else:
            prefix = per_sequence_prefix_attention_s(lengths, counts, self._decode_key_s)
        return full_share * (suffix * self._decode_key_s + prefix) + float(windowed) * self._decode_key_s

    # ---- hooks for the simulator's swap preemption and speculative decoding ----------------------------------
    def swap_time_s(self, blocks: int) -> float:
        """Seconds to copy ``blocks`` whole KV blocks one way over the host link (PCIe / C2C). Engines copy whole
        blocks (vLLM's ``swap_blocks``); each GPU of the replica moves its share over its own link in parallel."""
        return blocks * self.block_size * self.kv_bytes_per_token / self.host_link_bytes_per_s

    def verify_step_time_s(self, prefill_tokens, prefill_context, decode_context, queries: int) -> float:
        """An iteration in which each decode entry computes ``queries`` tokens at once (speculative verification
        of ``queries - 1`` proposals plus one token, Leviathan et al. 2023): ``queries`` tokens of token-linear work
        and LM head per sequence, and attention of ``queries`` queries over its context, the larger of reading its
        KV once and the query-key pairs at the attention rate. ``queries=1`` is ``step_time_s``."""
        d = np.asarray(decode_context, dtype=float)
        if queries == 1 or not d.size:
            return self.step_time_s(prefill_tokens, prefill_context, d)
        q = float(queries)
        read = float(self._keys(d + (q - 1.0)).sum()) * self._kv_read_s
        pairs = float((q * (self._keys(d) + q / 2.0)).sum()) * self._prefill_pair_s
        prefill_sum = prefill_attn = 0.0
        if len(prefill_tokens):
            p = np.asarray(prefill_tokens, dtype=float)
            keys = self._keys(np.asarray(prefill_context, dtype=float))
            prefill_sum = float(p.sum())
            prefill_attn = max(float((p * (keys + p / 2.0)).sum()) * self._prefill_pair_s,
                               float(keys.sum()) * self._kv_read_s)  # fmt: skip
        tokens = prefill_sum + d.size * q
        seqs = len(prefill_tokens) + d.size * queries
        linear = self._table(self._linear, self._linear_dense, tokens)
        head = self._table(self._head, self._head_dense, float(seqs))
        gpu = (linear + head + prefill_attn + max(read, pairs) + self._fixed_s) * self._in_situ
        return max(gpu, self._host_floor_s) + self._host_step_s + self._host_seq_s * (len(prefill_tokens) + d.size)
