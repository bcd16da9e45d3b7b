"""Compute-optimal model size and token count.

Hoffmann et al. 2022 ("Training Compute-Optimal Large Language Models", arXiv:2203.15556), Approach 3: the
fitted loss ``L(N, D) = E + A / N**alpha + B / D**beta`` with E = 1.69, A = 406.4, B = 410.7, alpha = 0.34,
beta = 0.28, and training compute ``C = 6 N D``. Minimising L over N at fixed C gives
``N* = G (C/6)**(beta/(alpha+beta))``, ``D* = (C/6)**(alpha/(alpha+beta)) / G`` with
``G = (alpha A / (beta B))**(1/(alpha+beta))``.

Data-constrained (Muennighoff et al. 2023, "Scaling Data-Constrained Language Models", arXiv:2305.16264):
with ``U`` unique tokens seen ``D / U`` times, the effective data is
``D' = U + U R* (1 - exp(-R / R*))`` with ``R = D / U - 1`` repetitions and ``R*_D = 15.4``; fathom minimises
``L(N, D')`` over N at fixed C (the loss of repeated data, not of fresh data). Vectorised over budgets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

E, A, B, ALPHA, BETA = 1.69, 406.4, 410.7, 0.34, 0.28
R_STAR_D = 15.4


def loss(n, d) -> np.ndarray:
    return E + A / np.asarray(n, dtype=float) ** ALPHA + B / np.asarray(d, dtype=float) ** BETA


def effective_tokens(d, unique) -> np.ndarray:
    """Muennighoff et al. 2023: repeated tokens are worth less; ``unique = inf`` means no repetition."""
    d, u = np.asarray(d, dtype=float), np.asarray(unique, dtype=float)
    fresh = d <= u
    safe_u = np.where(np.isfinite(u), u, 1.0)
    repeats = np.maximum(d / safe_u - 1.0, 0.0)
    repeated = safe_u + safe_u * R_STAR_D * (1.0 - np.exp(-repeats / R_STAR_D))
    return np.where(fresh, d, repeated)


@dataclass(frozen=True)
class Optimum:
    params: np.ndarray
    tokens: np.ndarray  # tokens trained on (repeats included)
    effective_tokens: np.ndarray
    loss: np.ndarray
    epochs: np.ndarray  # tokens / unique tokens (1 when data is unconstrained)


def chinchilla_optimum(flops) -> Optimum:
    c = np.asarray(flops, dtype=float)
    g = (ALPHA * A / (BETA * B)) ** (1.0 / (ALPHA + BETA))
    n = g * (c / 6.0) ** (BETA / (ALPHA + BETA))
    d = (c / 6.0) ** (ALPHA / (ALPHA + BETA)) / g
    return Optimum(n, d, d, loss(n, d), np.ones_like(n))


def data_constrained_optimum(flops, unique_tokens, grid: int = 2001) -> Optimum:
    """Best N for a budget when only ``unique_tokens`` exist: a log-spaced grid over N per budget, one array."""
    c = np.atleast_1d(np.asarray(flops, dtype=float))
    u = np.broadcast_to(np.asarray(unique_tokens, dtype=float), c.shape)
    base = chinchilla_optimum(c)
    n = base.params[:, None] * np.logspace(-2, 2, grid)[None, :]
    d = c[:, None] / (6.0 * n)
    eff = effective_tokens(d, u[:, None])
    losses = loss(n, eff)
    best = np.argmin(losses, axis=1)
    rows = np.arange(len(c))
    n_best, d_best = n[rows, best], d[rows, best]
    return Optimum(n_best, d_best, eff[rows, best], losses[rows, best], d_best / u)
