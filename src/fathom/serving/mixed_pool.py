"""Splitwise's mixed machine pool: prefill and decode machines that lend themselves to the other phase under load.

Splitwise (Patel et al. ISCA'24, Sec. 4.1) keeps a prompt pool, a token pool and a mixed pool. Its cluster-level
scheduler picks a prompt machine and a token machine for each request when it arrives (join the shortest queue, with
queues counted in pending tokens). When the least-loaded prompt machine's queue is too long it looks in the mixed pool,
and if that is full too it moves a token machine into the mixed pool to run the prompt; when no token machine has
memory left for the request it looks in the mixed pool and then moves a prompt machine there to run the tokens. A
machine in the mixed pool runs mixed batches like a machine of a non-split cluster, and goes back to its own pool
once it has nothing left to run. A request whose two machines are the same runs there whole, without a KV transfer.

The policy below follows the paper's artifact (github.com/Mutinifni/splitwise-sim, commit 8f99e7d, scheduler.py
``MixedPoolScheduler``), which the paper's Sec. 6 clusters run with (scripts/run_throughput_iso{power,cost}.sh,
``applications.0.scheduler=mixed_pool``):

- a machine's pending tokens are the prompt tokens queued or running there that have not yet produced their first
  token, plus one for every request it decodes or will decode (``sched_pending_tokens``: + prompt size on the prompt
  machine, + 1 on the token machine, each taken off when that phase ends);
- the least-pending prompt machine is *too long* when it has requests waiting to be admitted and its pending tokens
  plus this prompt exceed ``prompt_queue_tokens`` (``is_queue_long``; 8192 in configs/orchestrator_repo/schedulers/
  mixed_pool.yml, ``prompt_max_pending_batch_tokens``);
- the token machine is the one with the least KV scheduled onto it (``sched_memory``: prompt + 1 tokens on the prompt
  machine until its KV has left, prompt + 1 + output tokens on the token machine until the request ends); it is
  *full* when that plus the request's prompt + 1 + output tokens reaches its KV capacity (``is_memory_loaded``);
- a token machine lent to prompts is the least-pending one, a prompt machine lent to tokens the one with the least KV
  scheduled; when neither search finds a machine the request runs whole on the least-pending machine of all pools;
- a mixed machine goes home when it starts an iteration with nothing to run (``notify_free_instance``).

fathom keeps its own replica engine on every machine (its scheduler's batching is the mixed batching), its KV
capacity in tokens for the artifact's memory in bytes, and its KV link (serialized per prefill replica).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fathom.errors import FathomInputError
from fathom.serving.request import Request, RequestState

if TYPE_CHECKING:
    from fathom.serving.replica import Replica

# Splitwise's artifact, configs/orchestrator_repo/schedulers/mixed_pool.yml: prompt_max_pending_batch_tokens
PROMPT_QUEUE_TOKENS = 8192


@dataclass(frozen=True)
class MixedPoolPolicy:
    """When a prompt machine's queue counts as too long (pending prompt tokens, Splitwise's artifact default)."""

    prompt_queue_tokens: int = PROMPT_QUEUE_TOKENS

    def __post_init__(self) -> None:
        if self.prompt_queue_tokens < 1:
            raise FathomInputError(f"mixed pool: prompt_queue_tokens must be >= 1, got {self.prompt_queue_tokens}")


class MixedPool:
    """The pools of one disaggregated simulation and the machines' scheduled load (one instance per run)."""

    def __init__(self, prefill: list[Replica], decode: list[Replica], policy: MixedPoolPolicy) -> None:
        self.policy = policy
        self.prompt, self.token = list(prefill), list(decode)
        self.mixed: list[Replica] = []
        n = len(prefill) + len(decode)
        self._home = {r.index: self.prompt for r in prefill} | {r.index: self.token for r in decode}
        self._decoding = [0] * n  # requests each machine decodes or will decode
        self._kv = [0] * n  # KV tokens scheduled onto each machine
        self._cap = [0] * n
        for r in (*prefill, *decode):
            self._cap[r.index] = r.kv.capacity_blocks * r.bs
        self._placed: dict[int, tuple[Replica, Replica]] = {}  # request id -> (prompt machine, token machine)
        self._sent: set[int] = set()  # requests whose KV has left their prompt machine
        self.moves = 0  # times a machine joined the mixed pool
        self.whole = 0  # requests that ended on the machine that prefilled them
        self.split = 0  # requests whose KV crossed to another machine

    # -- the artifact's two measures of load -------------------------------------------------------------------
    def _pending(self, rep: Replica) -> int:
        return rep.queued_prompt_tokens + self._decoding[rep.index]

    def _queue_long(self, rep: Replica, req: Request) -> bool:
        waits = bool(rep.waiting or rep.arrived_kv or rep.swapped)
        return waits and self._pending(rep) + req.input_tokens > self.policy.prompt_queue_tokens

    def _full(self, rep: Replica, req: Request) -> bool:
        return self._kv[rep.index] + req.input_tokens + 1 + req.output_tokens >= self._cap[rep.index]

    def _prompt_machine(self, pool: list[Replica], req: Request) -> Replica | None:
        if not pool:
            return None
        best = min(pool, key=self._pending)
        return None if self._queue_long(best, req) else best

    def _token_machine(self, pool: list[Replica], req: Request) -> Replica | None:
        if not pool:
            return None
        best = min(pool, key=lambda r: self._kv[r.index])
        return None if self._full(best, req) else best

    def _lend(self, pool: list[Replica], key) -> Replica:
        rep = min(pool, key=key)
        pool.remove(rep)
        self.mixed.append(rep)
        self.moves += 1
        return rep

    # -- the simulator's hooks ---------------------------------------------------------------------------------
    def place(self, req: Request) -> tuple[Replica, Replica]:
        """The prompt and token machines of a newly arrived request (the same machine: it runs whole there)."""
        p = self._prompt_machine(self.prompt, req)
        if p is None:
            p = self._prompt_machine(self.mixed, req)
        d = self._token_machine(self.token, req)
        if d is None:
            d = self._token_machine(self.mixed, req)
        if p is None and self.token:
            p = self._lend(self.token, self._pending)
        if d is None and self.prompt:
            d = self._lend(self.prompt, lambda r: self._kv[r.index])
        if p is None or d is None:  # no machine anywhere: the request runs whole, as in a non-split cluster
            p = d = min(self.prompt + self.mixed + self.token, key=self._pending)
        return p, d

    def admit(self, req: Request) -> Replica | None:
        """Place and queue a newly arrived request: the replica that prefills it, or None if it was rejected."""
        p, d = self.place(req)
        whole = p is d
        reason = None if whole else d.reject_reason(req, handoff=False)
        if reason is not None:
            req.state, req.reject_reason = RequestState.REJECTED, f"its decode replica cannot hold it: {reason}"
            return None
        if not p.enqueue(req, handoff=not whole):
            return None
        need = req.input_tokens + 1 + req.output_tokens
        self._kv[d.index] += need
        if not whole:
            self._kv[p.index] += req.input_tokens + 1
        self._decoding[d.index] += 1
        self._placed[req.id] = (p, d)
        return p

    def decode_replica(self, req: Request) -> Replica:
        """Where a request handed off by its prompt machine decodes (chosen when it arrived)."""
        return self._placed[req.id][1]

    def released(self, src: Replica, req: Request) -> None:
        """Its KV has left the prompt machine."""
        self._kv[src.index] -= req.input_tokens + 1
        self._sent.add(req.id)
        self.split += 1

    def finished(self, req: Request) -> None:
        """It ended: on its token machine, or on its prompt machine if its one output token came with the prompt."""
        p, d = self._placed.pop(req.id)
        self._kv[d.index] -= req.input_tokens + 1 + req.output_tokens
        self._decoding[d.index] -= 1
        if req.id in self._sent:
            self._sent.discard(req.id)
        else:
            self.whole += 1
            if p is not d:  # it never left the prompt machine
                self._kv[p.index] -= req.input_tokens + 1

    def idle(self, rep: Replica) -> None:
        """A replica found nothing to run: a mixed machine with no work left goes back to its own pool."""
        if rep in self.mixed and not (rep.waiting or rep.prefilling or rep.swapped or rep.arrived_kv or rep.running):
            self.mixed.remove(rep)
            self._home[rep.index].append(rep)

    def stats(self) -> dict[str, int]:
        return {"machine_moves": self.moves, "requests_whole": self.whole, "requests_split": self.split,
                "mixed_at_end": len(self.mixed)}  # fmt: skip
