"""Pareto fronts: the plans no other plan beats on every axis at once."""

from __future__ import annotations

import numpy as np


def non_dominated(costs: np.ndarray) -> np.ndarray:
    """Indices of the rows of ``costs`` (n x k, lower is better on every column) that no row dominates.

    A row dominates another when it is no worse on every column and better on one. Exact duplicates keep
    their first row only. The quadratic check is done in blocks, so fronts of a few thousand rows stay cheap.
    """
    costs = np.asarray(costs, dtype=float)
    if costs.ndim != 2:
        raise ValueError("costs must be a 2-D array (plans x objectives)")
    n = costs.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    # Sorting lexicographically puts every dominator before the rows it dominates; duplicates become adjacent.
    order = np.lexsort(costs.T[::-1])
    c = costs[order]
    first = np.ones(n, dtype=bool)
    first[1:] = np.any(c[1:] != c[:-1], axis=1)
    c, order = c[first], order[first]
    keep = np.ones(len(c), dtype=bool)
    block = max(1, 4_000_000 // max(len(c), 1))
    for start in range(0, len(c), block):
        rows = c[start : start + block]
        no_worse = np.all(c[None, :, :] <= rows[:, None, :], axis=2)
        better = np.any(c[None, :, :] < rows[:, None, :], axis=2)
        keep[start : start + block] = ~np.any(no_worse & better, axis=1)
    return np.sort(order[keep])


def training_pareto(tokens_per_s: np.ndarray, cost_per_token: np.ndarray, gpus: np.ndarray) -> np.ndarray:
    """Plans on the throughput (higher) / cost (lower) / GPU count (lower) front.

    For one GPU count only the best throughput-for-cost trade-offs can be on the front, so the 2-D front of
    each GPU count is taken first (vectorised), and the quadratic check runs on those few survivors.
    """
    tps = np.asarray(tokens_per_s, dtype=float)
    cost = np.asarray(cost_per_token, dtype=float)
    g = np.asarray(gpus, dtype=float)
    # Per GPU count: sort by throughput descending (then cost ascending); keep rows cheaper than all before.
    order = np.lexsort((cost, -tps, g))
    g_sorted, cost_sorted = g[order], cost[order]
    new_group = np.ones(len(order), dtype=bool)
    new_group[1:] = g_sorted[1:] != g_sorted[:-1]
    candidates = []
    starts = np.flatnonzero(new_group)
    ends = np.append(starts[1:], len(order))
    for s, e in zip(starts, ends, strict=True):  # one step per GPU count, not per plan
        running = np.minimum.accumulate(cost_sorted[s:e])
        best_before = np.concatenate([[np.inf], running[:-1]])
        candidates.append(order[s:e][cost_sorted[s:e] < best_before])
    cand = np.concatenate(candidates) if candidates else np.zeros(0, dtype=np.int64)
    front = non_dominated(np.column_stack([-tps[cand], cost[cand], g[cand]]))
    return cand[front]
