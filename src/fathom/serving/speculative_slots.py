"""Decoding requests under speculative decoding: each target step emits a sampled number of tokens per request.

Each of the ``k`` proposals is accepted with probability ``alpha`` until the first rejection, and the target adds
one token of its own, so a step yields ``min(G, k + 1)`` tokens with G geometric on 1, 2, ... of success probability
``1 - alpha``; its mean is ``(1 - alpha^(k+1)) / (1 - alpha)``, Leviathan et al. 2023's expected tokens per step.
Steps are independent, so when a request starts decoding its whole path is drawn at once (one vectorised draw from
the replica's seeded generator): its context before each of its steps (a row of ``_path``), its finishing iteration,
and the KV blocks it needs at each step, added to a per-iteration count. An iteration then costs a gather, as in
plain decoding. During a step a request holds KV for its context plus the ``k + 1`` positions it verifies, never
more than input + output tokens (vLLM's lookahead slots); rejected positions are overwritten by the next step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from fathom.serving.decode_slots import DecodeSlots
from fathom.serving.seq import Seq

if TYPE_CHECKING:
    from fathom.serving.replica import Replica


def accepted_tokens(rng: np.random.Generator, acceptance: float, num_tokens: int, size: int) -> np.ndarray:
    """Tokens ``size`` target steps yield: geometric(1 - alpha) truncated at ``num_tokens + 1``.

    Drawn by inversion, ``1 + floor(ln U / ln alpha)`` (P(G > n) = alpha^n), from one uniform per step, so runs that
    differ only in alpha use common random numbers: a higher alpha never yields fewer tokens on the same draw."""
    u = 1.0 - rng.random(size)  # in (0, 1]
    if acceptance >= 1.0:
        return np.full(size, num_tokens + 1, dtype=np.int64)
    if acceptance <= 0.0:
        return np.ones(size, dtype=np.int64)
    extra = np.floor(np.log(u) / np.log(acceptance))
    return 1 + np.minimum(extra, num_tokens).astype(np.int64)


class SpeculativeSlots(DecodeSlots):
    """Decoding requests of a replica, each advanced by its sampled accepted tokens per iteration."""

    def _init_decodes(self: Replica) -> None:
        super()._init_decodes()
        self._lockstep = False
        spec = self.config.speculative
        self._k, self._alpha = spec.num_tokens, spec.acceptance
        self._rng = np.random.default_rng([self.config.seed, self.index])
        self._path = np.zeros((64, 64))  # slot -> context before each of its steps, then its final context
        self._row0 = np.zeros(64, dtype=np.int64)  # iteration of each slot's first step
        self._held0 = np.zeros(64, dtype=np.int64)  # tokens it held when it joined
        self._steps = np.zeros(64, dtype=np.int64)
        self._need = np.zeros(1024, dtype=np.int64)  # iteration -> KV blocks the decodes need for it
        self._rows = np.zeros(0, dtype=np.int64)
        self._emit = 0  # tokens the decodes of the iteration in flight emit

    # -- the iteration's view --------------------------------------------------------------------------------------
    def _blocks_due(self: Replica, t: int) -> int:
        return int(self._need[t]) if t < self._need.size else 0

    def _decode_contexts(self: Replica, t: int) -> np.ndarray:
        if self._dirty:
            self._rows, self._dirty = np.flatnonzero(self._mask), False
        rows = self._rows
        cols = t - self._row0[rows]
        ctx = self._path[rows, cols]
        self._emit = int((self._path[rows, cols + 1] - ctx).sum())
        return ctx

    def start_iteration(self: Replica, now: float) -> float | None:
        dur = super().start_iteration(now)
        if dur is not None and self._n_dec_iter:  # count the tokens emitted, not the requests decoding
            self.decode_tokens += self._emit - self._n_dec_iter
            self._n_dec_iter = self._emit
        return dur

    # -- KV held along a path --------------------------------------------------------------------------------------
    def _held(self: Replica, slot: int, j: int) -> int:
        """Tokens held during local step ``j`` (``-1``: when it joined)."""
        if j < 0:
            return int(self._held0[slot])
        row = self._path[slot]
        return int(min(row[j] + self._k + 1, row[self._steps[slot]]))

    def _decode_alloc(self: Replica, seq: Seq, c0: int) -> int:
        req = seq.req
        return min(c0 + self._k + 1, req.input_tokens + req.output_tokens)

    def _block_due_of(self: Replica, seq: Seq, t: int) -> int:
        j = t - int(self._row0[seq.slot])
        return self.kv.blocks_for(self._held(seq.slot, j)) - self.kv.blocks_for(self._held(seq.slot, j - 1))

    def _decode_held(self: Replica, seq: Seq) -> int:
        j = self.it - int(self._row0[seq.slot])
        return self._held(seq.slot, j if self._grown else j - 1)

    def _step_needs(self: Replica, slot: int) -> np.ndarray:
        """Blocks the request in ``slot`` takes at each of its steps."""
        n = int(self._steps[slot])
        row = self._path[slot, : n + 1]
        held = np.minimum(row[:n] + (self._k + 1), row[n])
        blocks = -(-held.astype(np.int64) // self.bs)
        return np.diff(blocks, prepend=-(-int(self._held0[slot]) // self.bs))

    # -- joining and leaving ---------------------------------------------------------------------------------------
    def _grow_slots(self: Replica, width: int) -> None:
        rows, cols = self._path.shape
        if not self._free_slots:
            self._mask = np.concatenate([self._mask, np.zeros(rows, dtype=bool)])
            for name in ("_row0", "_held0", "_steps"):
                setattr(self, name, np.concatenate([getattr(self, name), np.zeros(rows, dtype=np.int64)]))
            self._free_slots = list(range(2 * rows - 1, rows - 1, -1))
        new_rows, new_cols = self._mask.size, max(cols, width)
        if (new_rows, new_cols) != (rows, cols):
            path = np.zeros((new_rows, new_cols))
            path[:rows, :cols] = self._path
            self._path = path

    def _add_decoder(self: Replica, seq: Seq, start: int, c0: int, held: int) -> None:
        req = seq.req
        remaining = req.output_tokens - req.generated_tokens
        cum = np.cumsum(accepted_tokens(self._rng, self._alpha, self._k, remaining))
        n = int(np.searchsorted(cum, remaining)) + 1  # steps until the output is complete
        self._grow_slots(n + 1)
        slot = self._free_slots.pop()
        row = self._path[slot]
        row[0] = c0
        row[1:n] = c0 + cum[: n - 1]
        row[n] = c0 + remaining
        self._row0[slot], self._held0[slot], self._steps[slot] = start, held, n
        self._mask[slot] = True
        self._dirty = True
        seq.slot, seq.start, seq.c0 = slot, start, c0
        if start + n > self._need.size:
            self._need = np.concatenate([self._need, np.zeros(max(self._need.size, start + n), dtype=np.int64)])
        self._need[start : start + n] += self._step_needs(slot)
        self._at_finish(seq, start + n - 1)
        self.n_dec += 1

    def _drop_decoder(self: Replica, seq: Seq, listed: bool = True) -> None:
        slot = seq.slot
        if listed:  # preempted: its later steps need no blocks
            start = int(self._row0[slot])
            j = max(self.it - start, 0)
            n = int(self._steps[slot])
            self._need[start + j : start + n] -= self._step_needs(slot)[j:]
            self._finish_at[seq.finish_it].remove(seq)
        self._mask[slot] = False
        self._free_slots.append(slot)
        self._dirty = True
        seq.slot = -1
        self.n_dec -= 1

    def _sync(self: Replica, seq: Seq, upto: int) -> None:
        """Emit the tokens of iterations ``seq.start .. upto - 1``: each iteration's accepted tokens at its end."""
        if upto <= seq.start:
            return
        row0 = int(self._row0[seq.slot])
        path = self._path[seq.slot, seq.start - row0 : upto - row0 + 1]
        gains = np.diff(path).astype(np.int64)
        seq.req.token_times_s.extend(np.repeat(self._iter_end[seq.start : upto], gains))
        seq.req.generated_tokens += int(path[-1] - path[0])
        seq.c0 = int(path[-1])
        seq.start = upto
