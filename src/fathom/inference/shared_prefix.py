"""Decode attention over a prefix that a batch's sequences share (Hydragen, Juravsky et al. 2024, arXiv:2402.05099).

Paged attention stores a shared prefix once but each sequence still reads the prefix's keys and values on its own:
a batch of ``B`` sequences sharing ``P`` prefix tokens moves ``B * P`` tokens of KV per decode step, a
matrix-vector product per sequence. Hydragen splits attention into the shared prefix and each sequence's own
suffix and merges the two softmax partials by their log-sum-exp. The prefix part batches the ``B`` queries
together, one matrix-matrix product against the prefix's keys and values: the prefix KV is read once per batch
and the work runs at the tensor-core attention rate, so its time is the larger of one read of ``P`` tokens of KV
and ``B * P`` query-key pairs at the attention rate. The suffixes are read per sequence as before.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fathom.errors import FathomInputError


def prefix_groups(shared_prefix: Sequence[tuple[float, int]]) -> tuple[np.ndarray, np.ndarray]:
    """``(prefix_len, sequences)`` pairs -> two arrays, checked: lengths >= 0, at least one sequence per group."""
    groups = np.asarray(shared_prefix, dtype=float).reshape(-1, 2)
    lengths, counts = groups[:, 0], groups[:, 1]
    if (lengths < 0).any() or (counts < 1).any():
        raise FathomInputError("shared_prefix: each group needs prefix_len >= 0 and at least one sequence")
    return lengths, counts


def shared_prefix_attention_s(lengths: np.ndarray, counts: np.ndarray, kv_read_s: float, pair_s: float) -> float:
    """Seconds of the prefix part of decode attention with Hydragen's inter-sequence batching: per group, the
    larger of reading the prefix KV once and ``count * length`` query-key pairs at the attention rate."""
    return float(np.maximum(lengths * kv_read_s, counts * lengths * pair_s).sum())


def per_sequence_prefix_attention_s(lengths: np.ndarray, counts: np.ndarray, kv_read_s: float) -> float:
    """Seconds of the same prefix part when every sequence reads the prefix on its own (paged attention)."""
    return float((counts * lengths).sum() * kv_read_s)
