"""Shrinking long simulation outputs to what a figure can show: binned step functions, CDF points, subsets.

A 100,000-request run records millions of per-iteration samples; drawing them all costs seconds and shows
nothing more than a few thousand well-chosen points do.
"""

from __future__ import annotations

import numpy as np


def binned_mean(times: np.ndarray, values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Time-weighted mean over each bin ``[edges[k], edges[k+1])`` of the step function that is ``values[i]`` from
    ``times[i]`` until ``times[i+1]`` (0 before the first sample; the last value holds to the end).

    Exact for any sample density: the integral of the step function is read at the bin edges, so a sample that
    spans several bins counts in each of them. ``times`` must be sorted (equal times: the last one wins).
    """
    t = np.asarray(times, dtype=float)
    v = np.asarray(values, dtype=float)
    edges = np.asarray(edges, dtype=float)
    if t.size == 0:
        return np.zeros(max(edges.size - 1, 0))
    integral_at = np.concatenate([[0.0], np.cumsum(v[:-1] * np.diff(t))])  # from times[0] to times[i]
    idx = np.searchsorted(t, edges, side="right") - 1
    safe = np.maximum(idx, 0)
    integral = np.where(idx >= 0, integral_at[safe] + v[safe] * (edges - t[safe]), 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nan_to_num(np.diff(integral) / np.diff(edges))


def cdf_points(values: np.ndarray, max_points: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """``(x, F(x))`` of the empirical CDF of ``values`` (NaNs dropped), at most ``max_points`` points: every value
    when there are few, else evenly spaced quantiles (the curve's shape, the tails included)."""
    v = np.asarray(values, dtype=float)
    v = np.sort(v[~np.isnan(v)])
    if v.size <= max_points:
        return v, np.arange(1, v.size + 1) / max(v.size, 1)
    q = np.linspace(0.0, 1.0, max_points)
    return np.quantile(v, q), q


def subset(n: int, max_points: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most ``max_points`` of ``n`` items, drawn uniformly (seeded: the same figure each run)."""
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))
