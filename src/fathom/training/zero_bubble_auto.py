"""Automatic zero-bubble pipeline schedules (ZB-1p / ZB-2p of Qi et al. ICLR'24, arXiv:2401.10241, Sec. 3).

Splitting the backward pass into the input-gradient pass B and the weight-gradient pass W lets a scheduler fill
pipeline bubbles with W passes. The paper's handcrafted ZB-H1/ZB-H2 assume equal F, B and W times; its automatic
schedule instead searches, from the profiled pass times, a schedule under a memory limit: ZB-1p under 1F1B's peak
(p micro-batches of activations), ZB-2p under about twice that. This module is that scheduler as a list scheduler
(the paper's Sec. 3.1 heuristic, without its ILP refinement):

- every stage runs a ready B first (it frees memory and unblocks the stage before it);
- else a ready F while the stage holds fewer than ``limit`` micro-batches (an F allocates activations that its W
  frees) and runs at most ``extra`` forwards further ahead of its backwards than 1F1B would, which is the paper's
  "as many F as the memory limit allows" warm-up;
- else a pending W, when the gap until the next F or B fits it or nothing else can run (W fills bubbles).

Stages may differ (the last one carries the LM head); sends cost ``p2p`` seconds each way. The result is the
span of one optimizer step's pipeline; ``fathom.training.step_time`` turns it into a bubble. Cached: plan
searches repeat the same few (p, m, pass-time ratios).
"""

from __future__ import annotations

import functools
import math

# Pass times are rounded to this relative step before caching: a search prices thousands of plans whose stage
# times differ in the fourth digit; the makespan moves by no more than that rounding.
_RATIO_DIGITS = 3


def pipeline_span(
    stages: int,
    micro_batches: int,
    fwd: tuple[float, ...],
    bwd: tuple[float, ...],
    wgrad: tuple[float, ...],
    p2p: float,
    limit: int,
) -> float:
    """Seconds one step keeps the busiest stage occupied, from its first pass to its last, under the best of the
    scheduler's warm-up variants. ``fwd``/``bwd``/``wgrad`` hold each stage's F, B (input gradient only) and W
    times; ``limit`` is the micro-batches of activations a stage may hold at once.

    The span, not the makespan, because zero-bubble schedules bypass the optimizer's global synchronisation
    (Qi et al. Sec. 4, post-validation): each stage starts its next step as soon as its own passes are done.
    """
    return pipeline_times(stages, micro_batches, fwd, bwd, wgrad, p2p, limit)[1]


def pipeline_times(stages, micro_batches, fwd, bwd, wgrad, p2p, limit) -> tuple[float, float]:
    """(makespan, span) of the best warm-up variant. The variants cap the forwards a stage runs ahead of its
    backwards at 1F1B's ``p - s`` plus 0, 1, 2, 4 or p extra, or not at all: the paper's heuristic is likewise run
    over several warm-up settings and the best schedule kept."""
    if stages < 1 or micro_batches < 1:
        raise ValueError("a pipeline needs at least one stage and one micro-batch")
    scale = max(max(fwd), 1e-30)
    key = tuple(round(x / scale, _RATIO_DIGITS) for x in (*fwd, *bwd, *wgrad, p2p))
    limit = max(int(limit), 1)
    runs = [_makespan(stages, micro_batches, key, limit, extra) for extra in (0, 1, 2, 4, stages, micro_batches)]
    makespan, span = min(runs, key=lambda r: (r[1], r[0]))
    return scale * makespan, scale * span


@functools.lru_cache(maxsize=4096)
def _makespan(p: int, m: int, key: tuple[float, ...], limit: int, extra: int) -> tuple[float, float]:
    fwd, bwd, wgrad, p2p = key[:p], key[p : 2 * p], key[2 * p : 3 * p], key[3 * p]
    f_done = [[math.inf] * m for _ in range(p)]  # finish time of F(s, i)
    b_done = [[math.inf] * m for _ in range(p)]
    next_f, next_b, next_w = [0] * p, [0] * p, [0] * p
    free = [0.0] * p  # when each stage is next idle
    state = (p, m, fwd, bwd, wgrad, p2p, limit, extra, f_done, b_done, next_f, next_b, next_w, free)
    # Each stage's next pass (start, priority, stage, kind); a commit changes only its own and its neighbours'.
    cand = [_choose(s, *state) for s in range(p)]
    first = [math.inf] * p  # when each stage starts its first pass
    for _ in range(3 * p * m):
        known = [c for c in cand if c is not None]
        if not known:  # cannot happen with limit >= 1: the last stage always frees memory
            raise RuntimeError("pipeline schedule deadlocked")
        start, _, s, kind = min(known)
        first[s] = min(first[s], start)
        if kind == "B":
            i = next_b[s]
            b_done[s][i] = free[s] = start + bwd[s]
            next_b[s] += 1
        elif kind == "F":
            i = next_f[s]
            f_done[s][i] = free[s] = start + fwd[s]
            next_f[s] += 1
        else:
            free[s] = start + wgrad[s]
            next_w[s] += 1
        for n in (s - 1, s, s + 1):
            if 0 <= n < p:
                cand[n] = _choose(n, *state)
    return max(free), max(f - s for f, s in zip(free, first, strict=True))


def _choose(s, p, m, fwd, bwd, wgrad, p2p, limit, extra, f_done, b_done, next_f, next_b, next_w, free):
    """The next pass stage ``s`` runs and when: (start, priority, stage, kind), or None if nothing is known yet."""
    now = free[s]
    b_ready = f_ready = None
    i = next_b[s]
    if i < m and f_done[s][i] < math.inf:
        upstream = f_done[s][i] if s == p - 1 else b_done[s + 1][i] + p2p
        if upstream < math.inf:
            b_ready = max(now, upstream, f_done[s][i])
    i = next_f[s]
    if i < m and i - next_w[s] < limit and i - next_b[s] < p - s + extra:
        upstream = 0.0 if s == 0 else f_done[s - 1][i] + p2p
        if upstream < math.inf:
            f_ready = max(now, upstream)
    w_pending = next_w[s] < next_b[s]
    if b_ready is not None and b_ready <= now:
        return (now, 0, s, "B")
    if f_ready is not None and f_ready <= now:
        return (now, 1, s, "F")
    upcoming = min(x for x in (b_ready, f_ready, math.inf) if x is not None)
    if w_pending and (upcoming - now >= wgrad[s] or upcoming == math.inf or _blocked(s, m, next_f, next_b, next_w)):
        return (now, 2, s, "W")
    if upcoming < math.inf:
        return (upcoming, 0 if upcoming == b_ready else 1, s, "B" if upcoming == b_ready else "F")
    return None  # waiting on a pass another stage has not scheduled yet


def _blocked(s, m, next_f, next_b, next_w) -> bool:
    """All F and B passes of the stage are done: only W passes remain."""
    return next_f[s] >= m and next_b[s] >= m
