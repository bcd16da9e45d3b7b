"""A PyTorch decoder built from a ModelSpec (random weights), for timing real steps against the prediction.

Dense decoders only: RMSNorm or LayerNorm, RoPE or learned positions (or none), GQA through SDPA's causal kernel,
SwiGLU or GELU MLP, optional biases, QK-norm, parallel blocks, dropout and tied embeddings, as the spec says.
Decoding keeps a preallocated KV cache per layer. MoE and MLA models are refused (their kernels are not
reproduced here).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fathom.profiling.check_predict import check_supported
from fathom.specs.model import ModelSpec

_DROPOUT = 0.1


def _norm(spec: ModelSpec, width: int) -> nn.Module:
    if spec.norm_type == "rmsnorm":
        return nn.RMSNorm(width, eps=1e-6)
    return nn.LayerNorm(width, bias=spec.norm_bias)


def _init_weights(module: nn.Module) -> None:
    """The initialisation real training starts from: every weight N(0, 0.02), biases zero (GPT-2's scheme; the
    default ``initializer_range`` of Hugging Face's decoder configs and Megatron-LM's ``--init-method-std``).

    PyTorch's own defaults are not neutral for timing on a CPU: ``nn.Embedding`` draws N(0, 1), so a tied LM head
    gives logits with a standard deviation of sqrt(hidden) (23 for a 512-wide model), whose softmax exponentials
    underflow into subnormal floats that x86 cores compute on a slow path. Measured on the development VM for (1024,
    8192) logits: the cross-entropy 2.3x slower each way at a spread of 23 than at 0.45, and the LM head's
    weight-gradient GEMM over that gradient (27% subnormal) 160x slower. No real run sees such logits."""
    if isinstance(module, nn.Linear | nn.Embedding):
        nn.init.normal_(module.weight, mean=0.0, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding (Su et al. 2021) in the rotate-half layout; cos/sin: (seq, head_dim)."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


class Attention(nn.Module):
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = spec.num_heads, spec.num_kv_heads, spec.head_dim
        h = spec.hidden_size
        self.qkv = nn.Linear(h, (self.heads + 2 * self.kv_heads) * self.head_dim, bias=spec.qkv_bias)
        self.out = nn.Linear(self.heads * self.head_dim, h, bias=spec.attn_out_bias)
        self.q_norm = nn.RMSNorm(self.head_dim, eps=1e-6) if spec.qk_norm else None
        self.k_norm = nn.RMSNorm(self.head_dim, eps=1e-6) if spec.qk_norm else None
        self.cache: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor, rope: tuple | None, start: int) -> torch.Tensor:
        b, s, _ = x.shape
        q, k, v = self.qkv(x).split(
            [self.heads * self.head_dim, self.kv_heads * self.head_dim, self.kv_heads * self.head_dim], dim=-1
        )
        q = q.view(b, s, self.heads, self.head_dim).transpose(1, 2)
        k = k.view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
        v = v.view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            cos, sin = rope[0][start : start + s], rope[1][start : start + s]
            q, k = _rope(q, cos, sin), _rope(k, cos, sin)
        if self.cache is not None:  # decoding: write this step's K/V, attend over everything cached so far
            k_cache, v_cache = self.cache
            k_cache[:, :, start : start + s] = k
            v_cache[:, :, start : start + s] = v
            k, v = k_cache[:, :, : start + s], v_cache[:, :, : start + s]
        gqa = self.heads != self.kv_heads
        y = F.scaled_dot_product_attention(q, k, v, is_causal=s > 1, enable_gqa=gqa)
        return self.out(y.transpose(1, 2).reshape(b, s, self.heads * self.head_dim))


class MLP(nn.Module):
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.gated = spec.gated_mlp
        width = spec.ffn_size * (2 if self.gated else 1)
        self.up = nn.Linear(spec.hidden_size, width, bias=spec.mlp_bias)
        self.down = nn.Linear(spec.ffn_size, spec.hidden_size, bias=spec.mlp_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gated:  # SwiGLU (Shazeer 2020)
            gate, up = self.up(x).chunk(2, dim=-1)
            return self.down(F.silu(gate) * up)
        return self.down(F.gelu(self.up(x)))


class Block(nn.Module):
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.parallel = spec.parallel_block
        self.norm1 = _norm(spec, spec.hidden_size)
        self.norm2 = None if self.parallel else _norm(spec, spec.hidden_size)
        self.attn, self.mlp = Attention(spec), MLP(spec)
        self.drop = nn.Dropout(_DROPOUT) if spec.hidden_dropout else nn.Identity()

    def forward(self, x: torch.Tensor, rope, start: int) -> torch.Tensor:
        h = self.norm1(x)
        if self.parallel:
            return x + self.drop(self.attn(h, rope, start)) + self.drop(self.mlp(h))
        x = x + self.drop(self.attn(h, rope, start))
        return x + self.drop(self.mlp(self.norm2(x)))


class Decoder(nn.Module):
    def __init__(self, spec: ModelSpec, max_len: int) -> None:
        super().__init__()
        check_supported(spec)
        self.spec = spec
        self.embed = nn.Embedding(spec.vocab_size, spec.hidden_size)
        self.pos = nn.Embedding(max_len, spec.hidden_size) if spec.position_embedding == "learned" else None
        self.blocks = nn.ModuleList(Block(spec) for _ in range(spec.num_layers))
        self.norm = _norm(spec, spec.hidden_size)
        self.head = nn.Linear(spec.hidden_size, spec.vocab_size, bias=spec.lm_head_bias)
        if spec.tied_embeddings:
            self.head.weight = self.embed.weight
        self.apply(_init_weights)
        self.rope: tuple[torch.Tensor, torch.Tensor] | None = None
        if spec.position_embedding == "rope":
            inv = 1.0 / (10000.0 ** (torch.arange(0, spec.head_dim, 2).float() / spec.head_dim))
            angles = torch.outer(torch.arange(max_len).float(), inv)
            angles = torch.cat((angles, angles), dim=-1)
            self.register_buffer("cos", angles.cos(), persistent=False)
            self.register_buffer("sin", angles.sin(), persistent=False)

    def hidden(self, tokens: torch.Tensor, start: int = 0) -> torch.Tensor:
        x = self.embed(tokens)
        if self.pos is not None:
            x = x + self.pos(torch.arange(start, start + tokens.shape[1], device=tokens.device))
        rope = (self.cos.to(x.dtype), self.sin.to(x.dtype)) if self.spec.position_embedding == "rope" else None
        for block in self.blocks:
            x = block(x, rope, start)
        return self.norm(x)

    def forward(self, tokens: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The training loss (next-token cross-entropy in fp32); ``forward`` so DDP's hooks see it."""
        logits = self.head(self.hidden(tokens))
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.view(-1))

    def allocate_cache(self, batch: int, max_len: int, dtype: torch.dtype) -> None:
        """A zeroed K and V cache per layer, on the model's device; the previous cache is dropped first, so two
        never coexist."""
        device = self.embed.weight.device
        for block in self.blocks:
            block.attn.cache = None
        for block in self.blocks:
            a = block.attn
            shape = (batch, a.kv_heads, max_len, a.head_dim)
            a.cache = (torch.zeros(shape, dtype=dtype, device=device), torch.zeros(shape, dtype=dtype, device=device))

    @torch.no_grad()
    def next_tokens(self, tokens: torch.Tensor, start: int) -> torch.Tensor:
        """One engine iteration: run ``tokens`` from position ``start``, greedy-pick each sequence's next token."""
        last = self.hidden(tokens, start)[:, -1]
        return self.head(last).float().argmax(dim=-1, keepdim=True)
