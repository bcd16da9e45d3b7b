"""A request's token emission times, kept as references into its replica's log of iteration end times.

A decoding request emits one token at the end of every iteration it runs in, so its times are a run of the
replica's iteration-end log: storing ``(log, start, stop)`` instead of a copy of every time takes a few dozen bytes a
request instead of 8 bytes a token (a simulated day of traffic is hundreds of millions of tokens). The log is
append-only, so a reference stays valid. Times that are not a run of a log (the first token, ending a prefill; a
speculative step's accepted tokens) are kept as numbers.

Inter-token latency pools every gap between a request's consecutive tokens over all requests (``itl_sample``).
Gaps inside runs are the log's iteration durations, each counted once per run that spans it, so the pool is computed
as (duration, count) pairs per log with difference arrays, never as one value per token.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


class TokenTimes(Sequence):
    """Emission time of every output token of one request, in order (a read-only sequence of floats)."""

    __slots__ = ("_parts", "_n")

    def __init__(self, times: Iterable[float] = ()) -> None:
        self._parts: list = []  # single times (floats), runs (log, start, stop) meaning log[start:stop], float64 arrays
        self._n = 0
        times = list(times)
        if len(times) == 1:
            self.append(float(times[0]))
        elif times:
            self.extend(times)

    # ---- recording (the simulator) -------------------------------------------------------------------
    def append(self, t: float) -> None:
        self._parts.append(t)
        self._n += 1

    def extend_run(self, log: list[float], start: int, stop: int) -> None:
        """Tokens at ``log[start:stop]``; a run continuing the previous one on the same log is merged into it."""
        if stop <= start:
            return
        parts = self._parts
        if parts:
            last = parts[-1]
            if type(last) is tuple and last[0] is log and last[2] == start:
                parts[-1] = (log, last[1], stop)
                self._n += stop - start
                return
        parts.append((log, start, stop))
        self._n += stop - start

    def extend(self, times: Iterable[float]) -> None:
        """Tokens at explicit times (kept as one float64 array)."""
        arr = np.asarray(times if isinstance(times, np.ndarray) else list(times), dtype=float)
        if arr.size:
            self._parts.append(arr)
            self._n += int(arr.size)

    # ---- reading ------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._n

    def to_array(self) -> np.ndarray:
        out = np.empty(self._n)
        at = 0
        for p in self._parts:
            if type(p) is tuple:
                log, a, b = p
                out[at : at + b - a] = log[a:b]
                at += b - a
            elif isinstance(p, np.ndarray):
                out[at : at + p.size] = p
                at += p.size
            else:  # one time
                out[at] = p
                at += 1
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        arr = self.to_array()
        return arr if dtype is None else arr.astype(dtype)

    def tolist(self) -> list[float]:
        return self.to_array().tolist()

    def __getitem__(self, index):
        return self.to_array()[index].tolist()

    def __iter__(self):
        return iter(self.tolist())

    def __eq__(self, other) -> bool:
        if isinstance(other, TokenTimes | list | tuple | np.ndarray):
            return self.tolist() == list(other)
        return NotImplemented

    __hash__ = None  # mutable

    def __repr__(self) -> str:
        return f"TokenTimes({self.tolist()!r})"


def itl_sample(token_times: Iterable[Sequence[float]]) -> tuple[np.ndarray, np.ndarray]:
    """Every gap between consecutive tokens of each request, pooled: ``(values, counts)``, value i occurring
    ``counts[i]`` times. Gaps between requests are not gaps. Plain sequences of times are taken as they are."""
    runs: dict[int, tuple[list, list[int], list[int]]] = {}  # id(log) -> (log, starts, stops)
    singles: list[np.ndarray] = []  # gaps computed one by one: explicit times and joins between parts
    joins: list[float] = []
    for times in token_times:
        if not isinstance(times, TokenTimes):
            arr = np.asarray(times, dtype=float)
            if arr.size > 1:
                singles.append(np.diff(arr))
            continue
        prev = None  # last time of the previous part
        for p in times._parts:
            if type(p) is tuple:
                log, a, b = p
                entry = runs.get(id(log))
                if entry is None:
                    entry = runs[id(log)] = (log, [], [])
                entry[1].append(a)
                entry[2].append(b)
                first, last = log[a], log[b - 1]
            elif isinstance(p, np.ndarray):
                singles.append(np.diff(p))
                first, last = p[0], p[-1]
            else:  # one time
                first = last = p
            if prev is not None:
                joins.append(first - prev)
            prev = last
    values, counts = [], []
    for log, starts, stops in runs.values():
        # gap g (log[g + 1] - log[g]) lies inside run [a, b) when a <= g <= b - 2
        spans = np.zeros(len(log))
        np.add.at(spans, np.asarray(starts), 1.0)
        np.add.at(spans, np.asarray(stops) - 1, -1.0)
        inside = np.cumsum(spans[:-1])
        used = inside > 0
        values.append(np.diff(np.asarray(log, dtype=float))[used])
        counts.append(inside[used])
    if joins:
        values.append(np.asarray(joins, dtype=float))
        counts.append(np.ones(len(joins)))
    for gaps in singles:
        values.append(gaps)
        counts.append(np.ones(gaps.size))
    if not values:
        return np.empty(0), np.empty(0)
    return np.concatenate(values), np.concatenate(counts)
