"""Routers: which replica a request goes to. One router instance per simulation (and per pool when prefill and
decode are disaggregated), so its state (the round-robin cursor, prefix homes) never leaks between runs.

- ``round-robin``: replicas in turn, blind to load.
- ``least-loaded``: the replica with the fewest outstanding tokens (remaining prefill plus remaining decode of every
  request queued or running there; ties to the lowest index), the usual load-balancing signal of serving frontends.
- ``prefix-affinity``: requests sharing a ``prefix_id`` go where that prefix went first, so its cached KV is reused
  (SGLang's cache-aware routing, Zheng et al. 2024); requests without a prefix, and a prefix's first request, go
  least-loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from fathom.errors import unknown_name_error
from fathom.serving.request import Request

if TYPE_CHECKING:
    from fathom.serving.replica import Replica


class Router(Protocol):
    def route(self, req: Request, replicas: Sequence[Replica]) -> Replica:
        """The replica ``req`` goes to (``replicas`` is never empty)."""
        ...


def _least_loaded(replicas: Sequence[Replica]) -> Replica:
    best = replicas[0]
    for r in replicas:
        if r.outstanding < best.outstanding:
            best = r
    return best


class RoundRobinRouter:
    def __init__(self) -> None:
        self._next = 0

    def route(self, req: Request, replicas: Sequence[Replica]) -> Replica:
        r = replicas[self._next % len(replicas)]
        self._next += 1
        return r


class LeastLoadedRouter:
    def route(self, req: Request, replicas: Sequence[Replica]) -> Replica:
        return _least_loaded(replicas)


class PrefixAffinityRouter:
    def __init__(self) -> None:
        self._home: dict[str, int] = {}  # prefix_id -> replica index

    def route(self, req: Request, replicas: Sequence[Replica]) -> Replica:
        if req.prefix_id is None:
            return _least_loaded(replicas)
        home = self._home.get(req.prefix_id)
        for r in replicas:
            if r.index == home:
                return r
        r = _least_loaded(replicas)  # a new prefix, or its home is not among the candidates
        self._home[req.prefix_id] = r.index
        return r


ROUTERS = {"round-robin": RoundRobinRouter, "least-loaded": LeastLoadedRouter, "prefix-affinity": PrefixAffinityRouter}


def list_routers() -> list[str]:
    return sorted(ROUTERS)


def get_router(name: str) -> Router:
    """A fresh router by name; an unknown name is a one-line input error with close matches."""
    key = str(name).strip().lower()
    if key not in ROUTERS:
        raise unknown_name_error("router", str(name), ROUTERS)
    return ROUTERS[key]()
