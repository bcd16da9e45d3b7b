"""One transformer description for dense and MoE decoder-only models.

A model is data: the catalog holds one YAML file per preset, and ``fathom.importers.hf_config`` builds the same
spec from a Hugging Face ``config.json``. Everything the cost model needs (parameter counts per layer kind,
FLOPs per token) is derived here from the shape, never stored.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fathom.errors import FathomInputError

NormType = Literal["layernorm", "rmsnorm"]
PositionEmbedding = Literal["rope", "learned", "alibi", "none"]
# Hugging Face rope_type names: "llama3" (Llama 3.1), "linear" (position interpolation; Gemma 3's global layers),
# "dynamic" (dynamic NTK), "yarn" (DeepSeek-V3, Qwen long context), "longrope" (Phi-3 128k).
RopeScaling = Literal["none", "llama3", "linear", "dynamic", "yarn", "longrope"]

# Bounds that reject absurd input before it reaches float / int64 arithmetic (10**400 overflows a float): no
# model's size, count or context comes near 2**31, RoPE bases stay below 1e9 and scaling factors below 1000.
MAX_SIZE = 2**31
MAX_ROPE_THETA = 1e12
MAX_FACTOR = 1e6
PositiveInt = Annotated[int, Field(gt=0, le=MAX_SIZE)]
Count = Annotated[int, Field(ge=0, le=MAX_SIZE)]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class MoESpec(_Frozen):
    """Mixture-of-experts FFN (Switch/GShard style routing, DeepSeekMoE shared experts)."""

    num_experts: PositiveInt
    top_k: PositiveInt
    expert_ffn_size: PositiveInt
    num_shared_experts: Count = 0
    shared_expert_ffn_size: Count = Field(0, description="FFN width of each shared expert; 0 = expert_ffn_size")
    shared_expert_gate: bool = False  # Qwen2-MoE gates the shared expert with a sigmoid(h -> 1)
    first_dense_layers: Count = Field(0, description="leading layers with a dense FFN (DeepSeek first_k_dense)")
    layer_interval: PositiveInt = 1  # every n-th layer (after the dense ones) is MoE
    # Dropless routing (TrainingPlan.moe_routing): routed tokens on the busiest EP rank over the mean, a property of
    # the trained router. Default from FEPLB (Liu, Zhao, Qi 2026, arXiv:2604.19654, Fig. 1b): GLM-5 MoE layers,
    # 128 routed experts, EP = 8 on H100s, lose 18.6% of the MoE layer's GPU time waiting for the busiest rank, i.e.
    # busiest / mean = 1 / (1 - 0.186) = 1.23 (inferred from the reported waste). DODOCO (Ma et al. 2026,
    # arXiv:2605.20982) finds the per-expert max/mean moves by at most 5% from EP 4 to 32: one number per model.
    dropless_ep_imbalance: float = Field(1.23, ge=1.0, le=MAX_FACTOR)

    @model_validator(mode="after")
    def _check(self) -> MoESpec:
        if self.top_k > self.num_experts:
            raise ValueError(f"moe.top_k ({self.top_k}) exceeds moe.num_experts ({self.num_experts})")
        return self

    @property
    def shared_ffn_size(self) -> int:
        return self.shared_expert_ffn_size or self.expert_ffn_size


class MLASpec(_Frozen):
    """Multi-head latent attention (DeepSeek-V2, arXiv:2405.04434): low-rank compressed K/V (and Q)."""

    q_lora_rank: Count = Field(0, description="0 = queries are not compressed")
    kv_lora_rank: PositiveInt
    qk_nope_head_dim: PositiveInt
    qk_rope_head_dim: PositiveInt
    v_head_dim: PositiveInt


class ModelSpec(_Frozen):
    """A decoder-only transformer. Sizes count elements; ``reported_*`` are the publisher's figures."""

    name: str
    family: str = "custom"
    num_layers: PositiveInt
    hidden_size: PositiveInt
    num_heads: PositiveInt
    num_kv_heads: PositiveInt
    head_dim: PositiveInt
    ffn_size: PositiveInt  # dense FFN width (also the dense layers of an MoE model)
    gated_mlp: bool = True  # SwiGLU / GeGLU: three matrices instead of two
    vocab_size: PositiveInt
    tied_embeddings: bool = False
    max_seq_len: PositiveInt = 4096
    norm_type: NormType = "rmsnorm"
    norms_per_layer: PositiveInt = 2
    norm_bias: bool = True  # layernorm bias; MPT (no_bias=True) drops it. RMSNorm never has one
    qk_norm: bool = False
    qkv_bias: bool = False
    attn_out_bias: bool = False
    mlp_bias: bool = False
    lm_head_bias: bool = False
    embedding_norm: bool = False  # BLOOM normalises the word embeddings
    position_embedding: PositionEmbedding = "rope"
    # RoPE's base frequency (Hugging Face ``rope_theta``; None = not recorded, an engine then uses its own default,
    # 10000 in Megatron-LM) and the RoPE scaling of ``rope_scaling`` (its rope_type and factor; "llama3" is Llama
    # 3.1's frequency-dependent scaling, low/high frequency factors 1 and 4 over an 8192-token original context).
    # Neither changes a cost; they are kept so that engine launch files build the model that was trained
    # (Megatron-LM --rotary-base, --use-rope-scaling --rope-scaling-factor), or say what they could not write.
    rope_theta: float | None = Field(None, gt=0, le=MAX_ROPE_THETA)
    rope_scaling: RopeScaling = "none"
    rope_scaling_factor: float = Field(1.0, gt=0, le=MAX_FACTOR)
    parallel_block: bool = False  # GPT-J / NeoX / Falcon: attention and MLP read the same input
    hidden_dropout: bool = False  # trained with dropout (GPT-3/Megatron era): masks kept for backward
    sliding_window: Count = Field(0, description="window size in tokens; 0 = full attention")
    num_sliding_window_layers: Count = 0
    moe: MoESpec | None = None
    mla: MLASpec | None = None
    reported_params: float | None = Field(None, gt=0, description="publisher's total parameter count")
    reported_active_params: float | None = Field(None, gt=0)
    source: str = "user supplied"

    @model_validator(mode="after")
    def _check(self) -> ModelSpec:
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_kv_heads ({self.num_kv_heads}) must divide num_heads ({self.num_heads})")
        if self.num_sliding_window_layers > self.num_layers:
            raise ValueError("num_sliding_window_layers exceeds num_layers")
        if self.num_sliding_window_layers and not self.sliding_window:
            raise ValueError("num_sliding_window_layers set but sliding_window is 0")
        if self.moe and self.moe.first_dense_layers > self.num_layers:
            raise ValueError("moe.first_dense_layers exceeds num_layers")
        return self

    @classmethod
    def from_dict(cls, data: dict) -> ModelSpec:
        """Build a spec, turning pydantic's multi-line report into one line naming the field."""
        from pydantic import ValidationError

        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(p) for p in err["loc"]) or "model"
            raise FathomInputError(f"model field {loc}: {err['msg']}") from None

    # ---- layer counts -------------------------------------------------------------------------
    @property
    def num_moe_layers(self) -> int:
        if self.moe is None:
            return 0
        rest = self.num_layers - self.moe.first_dense_layers
        return len(range(self.moe.layer_interval - 1, rest, self.moe.layer_interval))

    @property
    def num_dense_layers(self) -> int:
        return self.num_layers - self.num_moe_layers

    @property
    def is_moe(self) -> bool:
        return self.moe is not None

    # ---- parameter counts -----------------------------------------------------------------------
    @property
    def _norm_params(self) -> int:
        return (2 if self.norm_type == "layernorm" and self.norm_bias else 1) * self.hidden_size

    @property
    def attention_params(self) -> int:
        """Q, K, V and output projections (plus MLA's low-rank factors and norms), biases included."""
        h, nh, nkv, hd = self.hidden_size, self.num_heads, self.num_kv_heads, self.head_dim
        if self.mla is not None:
            m = self.mla
            qk_dim = m.qk_nope_head_dim + m.qk_rope_head_dim
            q = h * nh * qk_dim if not m.q_lora_rank else h * m.q_lora_rank + m.q_lora_rank * (1 + nh * qk_dim)
            kv = h * (m.kv_lora_rank + m.qk_rope_head_dim) + m.kv_lora_rank * (
                1 + nh * (m.qk_nope_head_dim + m.v_head_dim)
            )
            return q + kv + nh * m.v_head_dim * h
        qkv = h * (nh + 2 * nkv) * hd + (nh + 2 * nkv) * hd * self.qkv_bias
        out = nh * hd * h + h * self.attn_out_bias
        return qkv + out + 2 * hd * self.qk_norm

    @property
    def param_tensors_per_layer(self) -> float:
        """Parameter tensors of one transformer layer in Megatron's fused layout (one QKV matrix, one up matrix
        with the gate fused in, biases and norm shifts as their own tensors), averaged over dense and MoE layers
        (router and each expert's two matrices). ZeRO-3 stacks that gather per parameter pay one collective each."""
        norms = self.norms_per_layer * (2 if self.norm_type == "layernorm" and self.norm_bias else 1)
        attention = 2 + self.qkv_bias + self.attn_out_bias + 2 * self.qk_norm
        dense = 2 + 2 * self.mlp_bias
        if self.moe is None:
            return float(norms + attention + dense)
        experts = 1 + 2 * (self.moe.num_experts + self.moe.num_shared_experts)
        share = self.num_moe_layers / self.num_layers
        return float(norms + attention + (1 - share) * dense + share * experts)

    def mlp_params(self, ffn_size: int) -> int:
        """One dense FFN of width ``ffn_size``: 2 or 3 matrices, biases if the family has them."""
        h = self.hidden_size
        mats = (3 if self.gated_mlp else 2) * h * ffn_size
        bias = ((2 if self.gated_mlp else 1) * ffn_size + h) * self.mlp_bias
        return mats + bias

    @property
    def dense_layer_params(self) -> int:
        return self.attention_params + self.mlp_params(self.ffn_size) + self.norms_per_layer * self._norm_params

    @property
    def expert_params_per_layer(self) -> int:
        """Routed experts of one MoE layer: the part that expert parallelism shards."""
        if self.moe is None:
            return 0
        return self.moe.num_experts * self.mlp_params(self.moe.expert_ffn_size)

    @property
    def moe_layer_params(self) -> int:
        """A whole MoE layer: attention, router, routed and shared experts, norms."""
        if self.moe is None:
            return 0
        m, h = self.moe, self.hidden_size
        shared = m.num_shared_experts * self.mlp_params(m.shared_ffn_size) + h * m.shared_expert_gate
        return (
            self.attention_params
            + h * m.num_experts
            + self.expert_params_per_layer
            + shared
            + self.norms_per_layer * self._norm_params
        )

    @property
    def embedding_params(self) -> int:
        """Token embeddings, learned positions, and BLOOM's embedding norm."""
        pos = self.max_seq_len * self.hidden_size if self.position_embedding == "learned" else 0
        return self.vocab_size * self.hidden_size + pos + self._norm_params * self.embedding_norm

    @property
    def lm_head_params(self) -> int:
        """Final norm plus the output projection (zero extra when tied to the embeddings)."""
        head = 0 if self.tied_embeddings else self.vocab_size * self.hidden_size
        return head + self.vocab_size * self.lm_head_bias + self._norm_params

    @property
    def num_params(self) -> int:
        """Total parameters, counted from the shape (the test compares with ``reported_params``)."""
        return (
            self.embedding_params
            + self.lm_head_params
            + self.num_dense_layers * self.dense_layer_params
            + self.num_moe_layers * self.moe_layer_params
        )

    @property
    def num_active_params(self) -> int:
        """Parameters touched per token: only ``top_k`` routed experts of each MoE layer."""
        if self.moe is None:
            return self.num_params
        idle = (self.moe.num_experts - self.moe.top_k) * self.mlp_params(self.moe.expert_ffn_size)
        return self.num_params - self.num_moe_layers * idle
