"""The contract between the simulator and a cost model (``fathom.inference`` implements it).

A batch is described by arrays, one entry per request in the iteration:
- ``prefill_tokens[i]``: new prompt tokens computed for prefill entry ``i`` this iteration (a chunk or all);
- ``prefill_context[i]``: tokens of that request already in the KV cache before this chunk;
- ``decode_context[j]``: KV length of decoding request ``j`` (its new token attends to these).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class StepCostModel(Protocol):
    """What a replica needs to know about its hardware and model."""

    kv_capacity_tokens: int  # KV-cache capacity of one replica, in tokens (after weights and activations)
    block_size: int  # tokens per paged KV block
    max_context: int  # longest context the model accepts (prompt + output)
    kv_bytes_per_token: float  # per replica, for swap and disaggregated transfer
    host_link_bytes_per_s: float  # GPU <-> host, for KV swap

    def step_time_s(self, prefill_tokens: np.ndarray, prefill_context: np.ndarray, decode_context: np.ndarray) -> float:
        """Seconds of one engine iteration over this mixed batch (CPU overhead included)."""
        ...


class LinearCostModel:
    """A hand-checkable cost model for tests: a fixed step cost plus per-token and per-context-token costs."""

    def __init__(
        self,
        *,
        base_s: float = 0.01,
        per_prefill_token_s: float = 1e-4,
        per_decode_s: float = 1e-4,
        per_context_token_s: float = 0.0,
        kv_capacity_tokens: int = 100_000,
        block_size: int = 16,
        max_context: int = 32_768,
        kv_bytes_per_token: float = 131072.0,
        host_link_bytes_per_s: float = 25e9,
    ) -> None:
        self.base_s = base_s
        self.per_prefill_token_s = per_prefill_token_s
        self.per_decode_s = per_decode_s
        self.per_context_token_s = per_context_token_s
        self.kv_capacity_tokens = kv_capacity_tokens
        self.block_size = block_size
        self.max_context = max_context
        self.kv_bytes_per_token = kv_bytes_per_token
        self.host_link_bytes_per_s = host_link_bytes_per_s

    def step_time_s(self, prefill_tokens, prefill_context, decode_context) -> float:
        prefill_tokens = np.asarray(prefill_tokens, dtype=float)
        decode_context = np.asarray(decode_context, dtype=float)
        return float(
            self.base_s
            + self.per_prefill_token_s * prefill_tokens.sum()
            + self.per_decode_s * decode_context.size
            + self.per_context_token_s * (decode_context.sum() + np.asarray(prefill_context, dtype=float).sum())
        )
