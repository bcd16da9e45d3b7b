"""How many requests per second one replica sustains within the SLOs, from the step model alone (no simulation).

Steady state of continuous batching (Orca, Yu et al. 2022; vLLM, Kwon et al. 2023): ``b`` requests decode at once,
at a mean context of prompt + half the output. Each request emits its first token when its prompt is prefilled and
one token per iteration after that, so by Little's law a replica serving ``lam`` requests/s holds
``b = lam * (O - 1) * tau`` decoding requests, and every iteration also absorbs ``b / (O - 1)`` prompts' prefill.
The mean iteration time is therefore ``tau(b) = decode(b) + b / (O - 1) * prefill_cost(b)``, where
``prefill_cost`` is what a prompt adds to the iterations it rides in (whole, or in chunks of the token budget left
after the decodes, Sarathi-Serve, Agrawal et al. 2024). TPOT is about ``tau``; TTFT about half an iteration of
waiting plus the iterations that prefill the percentile-th prompt. The capacity is the largest ``lam(b) = b /
((O - 1) tau(b))`` over batch sizes the KV cache and ``max_batch`` allow with both estimates within their SLOs.
It ignores queueing, so it is an optimistic estimate: the search sizes fleets with it and the simulator decides.

Disaggregated pools (Splitwise, Patel et al. 2024; DistServe, Zhong et al. 2024): a prefill replica runs only
prompts, as many whole prompts as the token budget holds per iteration; a decode replica runs only decodes, and a
request's second token also waits for its KV to cross the link (``input * kv_bytes_per_token / link``).

Work is arrays over (engine settings x batch sizes); the step model is asked once per batch size and token
budget, not once per setting.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fathom.search.serving_space import Engine, LoadStats
from fathom.serving.schedulers import BUDGETED

BATCH_POINTS = 32


@dataclass(frozen=True)
class SLO:
    ttft_s: float
    tpot_s: float
    percentile: int


@dataclass(frozen=True)
class Capacity:
    """Per engine setting (rows) and length bucket (columns). Rates are requests/s per replica; 0 = cannot meet
    the SLOs at any load. ``*_gap``: the analytic latency over its SLO at the best batch size (<= 1 meets)."""

    aggregated: np.ndarray
    aggregated_gap: np.ndarray
    aggregated_closest: np.ndarray  # requests/s at the batch size with the smallest gap (for a closest miss)
    prefill: np.ndarray
    decode: np.ndarray
    disaggregated_gap: np.ndarray


def _budgeted(engine: Engine) -> bool:
    return engine.scheduler in BUDGETED


def replica_capacity(
    step, engines: list[Engine], kv_tokens: np.ndarray, load: LoadStats, slo: SLO, link_bytes_per_s: float
) -> Capacity:
    """Capacity of one replica (``step``: its ``InferenceStepModel``) under each engine setting and bucket.
    ``kv_tokens``: the KV capacity of a replica per engine setting (its activations depend on the settings)."""
    shape = (len(engines), load.buckets)
    out = {k: np.zeros(shape) for k in ("aggregated", "aggregated_closest", "prefill", "decode")}
    gaps = {k: np.full(shape, np.inf) for k in ("aggregated_gap", "disaggregated_gap")}
    kv = np.asarray(kv_tokens, dtype=float)[:, None]
    max_batch = np.array([e.max_batch for e in engines], dtype=float)[:, None]
    budget = np.array([e.max_batch_tokens for e in engines], dtype=float)[:, None]
    budgeted = np.array([_budgeted(e) for e in engines])[:, None]
    b = np.unique(np.geomspace(1, max_batch.max(), BATCH_POINTS).round())
    for j in range(load.buckets):
        prompt, tail = float(load.mean_input[j]), float(load.tail_input[j])
        out_tokens = max(float(load.mean_output[j]) - 1.0, 1.0)  # decode iterations per request
        ctx = prompt + float(load.mean_output[j]) / 2.0
        decode = np.array([step.step_time_s((), (), np.full(int(n), ctx)) for n in b])
        # Per engine row: the time a prompt adds to the iterations it rides in, and the percentile prompt's TTFT.
        rows = {}
        for e in {(_budgeted(e), e.max_batch_tokens) for e in engines}:
            rows[e] = _prefill_rows(step, b, decode, ctx, prompt, tail, *e)
        keys = [(_budgeted(e), e.max_batch_tokens) for e in engines]
        cost = np.stack([rows[k][0] for k in keys])
        ttft_prefill = np.stack([rows[k][1] for k in keys])
        tau = decode[None, :] + b[None, :] / out_tokens * cost
        ttft = tau / 2.0 + ttft_prefill
        limit = (b[None, :] <= max_batch) & (b[None, :] * ctx <= kv) & (~budgeted | (b[None, :] < budget))
        lam = b[None, :] / (out_tokens * tau)
        ratio = np.maximum(ttft / slo.ttft_s, tau / slo.tpot_s)
        out["aggregated"][:, j] = np.where(limit & (ratio <= 1.0), lam, 0.0).max(axis=1)
        masked = np.where(limit, ratio, np.inf)
        gaps["aggregated_gap"][:, j] = masked.min(axis=1)
        out["aggregated_closest"][:, j] = np.where(
            limit.any(axis=1), lam[np.arange(len(engines)), masked.argmin(axis=1)], 0
        )
        # Disaggregated: a prefill pool of prompt-only iterations, a decode pool of decode-only iterations.
        prefill_rate, prefill_ttft = _prefill_pool(step, engines, prompt, tail)
        transfer = prompt * float(step.kv_bytes_per_token) / link_bytes_per_s
        tpot = decode[None, :] + transfer / out_tokens
        dlimit = (b[None, :] <= max_batch) & (b[None, :] * ctx <= kv)
        dlam = np.where(dlimit & (tpot <= slo.tpot_s), b[None, :] / (out_tokens * decode[None, :]), 0.0).max(axis=1)
        d_ratio = np.where(dlimit, tpot / slo.tpot_s, np.inf).min(axis=1)
        p_ratio = prefill_ttft / slo.ttft_s
        both = (p_ratio <= 1.0) & (d_ratio <= 1.0)
        out["prefill"][:, j] = np.where(both, prefill_rate, 0.0)
        out["decode"][:, j] = np.where(both, dlam, 0.0)
        gaps["disaggregated_gap"][:, j] = np.maximum(p_ratio, d_ratio)
    return Capacity(**out, **gaps)


def _prefill_rows(step, b, decode, ctx, prompt, tail, budgeted, budget):
    """Per batch size: seconds a mean prompt adds to the iterations that prefill it, and the seconds of the
    iterations that prefill the percentile-th prompt alongside ``b`` decodes."""
    cost, ttft = np.empty(b.size), np.empty(b.size)
    for i, n in enumerate(b):
        decodes = np.full(int(n), ctx)
        if budgeted:
            room = max(budget - n, 1.0)
            chunk, tail_chunk = min(prompt, room), min(tail, room)
            added = step.step_time_s((chunk,), ((prompt - chunk) / 2.0,), decodes) - decode[i]
            cost[i] = prompt / chunk * added
            ttft[i] = np.ceil(tail / tail_chunk) * step.step_time_s(
                (tail_chunk,), ((tail - tail_chunk) / 2.0,), decodes
            )
        else:
            cost[i] = step.step_time_s((prompt,), (0.0,), decodes) - decode[i]
            ttft[i] = step.step_time_s((tail,), (0.0,), decodes)
    return cost, ttft


def _prefill_pool(step, engines: list[Engine], prompt: float, tail: float) -> tuple[np.ndarray, np.ndarray]:
    """Requests/s of a prompt-only replica and the TTFT of the percentile-th prompt on it (half an iteration of
    waiting plus its own prefill), per engine setting."""
    rate, ttft = np.empty(len(engines)), np.empty(len(engines))
    cache: dict[tuple, tuple[float, float]] = {}
    for i, e in enumerate(engines):
        key = (_budgeted(e), e.max_batch_tokens, e.max_batch)
        if key not in cache:
            budget = e.max_batch_tokens
            if _budgeted(e) and prompt > budget:  # one prompt, in chunks of the whole budget
                per_chunk = step.step_time_s((float(budget),), (prompt / 2.0,), ())
                r, iteration = budget / (prompt * per_chunk), per_chunk
            else:
                n = int(max(min(budget // prompt, e.max_batch), 1))
                iteration = step.step_time_s(np.full(n, prompt), np.zeros(n), ())
                r = n / iteration
            if _budgeted(e) and tail > budget:
                own = np.ceil(tail / budget) * step.step_time_s((float(budget),), (tail / 2.0,), ())
            else:
                own = step.step_time_s((tail,), (0.0,), ())
            cache[key] = (r, iteration / 2.0 + own)
        rate[i], ttft[i] = cache[key]
    return rate, ttft
