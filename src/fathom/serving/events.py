"""The simulator's event heap: one per simulation, ordered by (time, priority, sequence).

The sequence number is a per-heap counter, so events with equal time and priority pop in the order they were pushed
and the payload is never compared: a run is reproducible and two simulations never share an ordering.
"""

from __future__ import annotations

import heapq
import math
from typing import Any

# Priorities at equal times: lower pops first. An iteration that ends frees KV and emits tokens before a transfer
# lands or a request arrives at the same instant; a deferred replica step runs after everything else at that time.
ITERATION_DONE = 0
TRANSFER_DONE = 1
ARRIVAL = 2
STEP = 3

Event = tuple[float, int, int, int, Any]  # (time, priority, seq, kind, payload); kind equals its priority here


class EventHeap:
    """A binary heap of ``Event`` tuples (``heapq``), with its own tie-breaking counter."""

    __slots__ = ("items", "_seq")

    def __init__(self) -> None:
        self.items: list[Event] = []  # the heap itself; read ``items[0][0]`` for a fast peek, never write
        self._seq = 0

    def push(self, time: float, kind: int, payload: Any = None) -> None:
        """Schedule ``kind`` (one of the priorities above) at ``time``."""
        if not time >= 0.0 or math.isinf(time):
            raise ValueError(f"event time must be finite and >= 0, got {time}")
        self._seq += 1
        heapq.heappush(self.items, (time, kind, self._seq, kind, payload))

    def pop(self) -> Event:
        return heapq.heappop(self.items)

    def peek_time(self) -> float:
        """Time of the next event, ``inf`` when none is pending."""
        return self.items[0][0] if self.items else math.inf

    def __len__(self) -> int:
        return len(self.items)

    def __bool__(self) -> bool:
        return bool(self.items)
