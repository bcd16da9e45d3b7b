"""A request's state on one replica, as the replica and its scheduler see it."""

from __future__ import annotations

from fathom.serving.request import Request


class Seq:
    """A request's state on one replica. ``target``: tokens to compute before the next token is emitted (the prompt,
    or after a recompute preemption prompt + generated); ``done`` of them are computed; ``kv``: tokens whose blocks
    it holds while not decoding. While decoding (``slot >= 0``) its context before iteration t is ``c0 + t - start``
    (speculative decoding: read from its sampled path) and ``Request.generated_tokens``/``token_times_s`` lag until
    it leaves (``_sync``). While a recomputation runs, ``Request.context_tokens`` overstates the KV held: its
    generated tokens are counted before they are recomputed."""

    __slots__ = ("req", "order", "target", "done", "kv", "slot", "start", "c0", "phase", "finish_it")

    def __init__(self, req: Request, target: int, done: int = 0) -> None:
        self.req = req
        self.order = -1
        self.target = target
        self.done = done
        self.kv = 0
        self.slot = -1
        self.start = self.c0 = self.phase = self.finish_it = 0
