"""Bookkeeping of a replica's decoding requests without per-token Python work (a mixin of ``Replica``).

Every decoding request decodes in every iteration until it finishes or is preempted (all schedulers agree), so its
state is a function of the iteration index: its context is ``off + t`` in a slot array, the number of decodes needing
a new KV block at iteration ``t`` is a count kept per ``off mod block_size``, its finishing iteration is known when it
starts, and its token times are kept as a run of the replica's log of iteration end times when it leaves (``_sync``).
A decode holds KV for its context plus the slot of the token it computes in the current iteration.
"""

from __future__ import annotations

from array import array
from typing import TYPE_CHECKING

import numpy as np

from fathom.serving.seq import Seq

if TYPE_CHECKING:
    from fathom.serving.replica import Replica

_EMPTY = np.zeros(0)  # batch arrays are float64 (integer-valued): cost models compute in floats anyway


class DecodeSlots:
    """Decoding requests of a replica, advanced one token per iteration."""

    def _init_decodes(self: Replica) -> None:
        self._lockstep = True  # Replica.start_iteration inlines _blocks_due and _decode_contexts when True
        self.n_dec = 0
        self._off = np.zeros(64)
        self._off_sum = 0.0  # sum of the active decodes' offsets: their contexts sum to it + n_dec * t
        self._mask = np.zeros(64, dtype=bool)
        self._free_slots = list(range(63, -1, -1))
        self._active = _EMPTY
        self._t0d = np.zeros(())
        self._dirty = False
        self._phase = [0] * self.bs
        self._finish_at: dict[int, list[Seq]] = {}
        self._iter_end = array("d")  # end time of every iteration: the token times of decodes (8 bytes each)

    def _blocks_due(self: Replica, t: int) -> int:
        """New KV blocks the decodes need for iteration ``t``."""
        return self._phase[-t % self.bs]

    def _decode_contexts(self: Replica, t: int) -> np.ndarray:
        """KV length of every decode at iteration ``t`` (the batch's ``decode_context``)."""
        if self._dirty:
            self._active, self._dirty = self._off[self._mask], False
        self._t0d[()] = t  # adding a 0-d array is cheaper than adding a Python int
        return self._active + self._t0d

    def _decode_alloc(self: Replica, seq: Seq, c0: int) -> int:
        """Tokens a request joining the decodes in an iteration already under way must hold for it."""
        return c0 + 1

    def _block_due_of(self: Replica, seq: Seq, t: int) -> int:
        """Blocks decode ``seq`` still needs for iteration ``t`` (before this iteration's growth)."""
        return seq.phase == -t % self.bs

    def _decode_held(self: Replica, seq: Seq) -> int:
        """Tokens decode ``seq`` holds now (after ``_sync``): its context plus this iteration's slot once grown."""
        return seq.c0 + self._grown

    def _add_decoder(self: Replica, seq: Seq, start: int, c0: int, held: int) -> None:
        """``seq`` decodes from iteration ``start`` with context ``c0``, holding ``held`` tokens of KV now."""
        if not self._free_slots:
            size = self._off.size
            self._off = np.concatenate([self._off, np.zeros(size)])
            self._mask = np.concatenate([self._mask, np.zeros(size, dtype=bool)])
            self._free_slots = list(range(2 * size - 1, size - 1, -1))
        slot = self._free_slots.pop()
        off = c0 - start
        self._off[slot] = off
        self._off_sum += off
        self._mask[slot] = True
        self._dirty = True
        seq.slot, seq.start, seq.c0 = slot, start, c0
        seq.phase = off % self.bs
        self._phase[seq.phase] += 1
        req = seq.req
        f = seq.finish_it = start + req.output_tokens - req.generated_tokens - 1
        lst = self._finish_at.get(f)
        if lst is None:
            self._finish_at[f] = [seq]
        else:
            lst.append(seq)
        self.n_dec += 1

    def _at_finish(self: Replica, seq: Seq, f: int) -> None:
        seq.finish_it = f
        lst = self._finish_at.get(f)
        if lst is None:
            self._finish_at[f] = [seq]
        else:
            lst.append(seq)

    def _drop_decoder(self: Replica, seq: Seq, listed: bool = True) -> None:
        self._mask[seq.slot] = False
        self._off_sum -= self._off[seq.slot]
        self._free_slots.append(seq.slot)
        self._dirty = True
        self._phase[seq.phase] -= 1
        if listed:
            self._finish_at[seq.finish_it].remove(seq)
        seq.slot = -1
        self.n_dec -= 1

    def _sync(self: Replica, seq: Seq, upto: int) -> None:
        """Emit the tokens of iterations ``seq.start .. upto - 1`` into the request."""
        k = upto - seq.start
        if k > 0:
            seq.req.token_times_s.extend_run(self._iter_end, seq.start, upto)
            seq.req.generated_tokens += k
            seq.c0 += k
            seq.start = upto
