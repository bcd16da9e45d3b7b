"""The device's pool of LoRA adapters on one replica, and which adapter each request asks for.

S-LoRA (Sheng et al. 2023) keeps all adapters in host memory and the ones the running batch needs on the device,
loading the others on demand; vLLM caps the device pool at ``--max-loras`` adapters per batch and caches
``--max-cpu-loras`` in host memory (least recently used out). Here:
- a request may join the running batch only if its adapter is on the device and in use already, or a slot is free
  or held by an adapter nobody running uses (which is evicted, least recently used first): so a batch never mixes
  more than ``max_loras_per_batch`` adapters, and a request whose adapter cannot be placed waits (first come, first
  served: the queue's head blocks the ones behind it, as in vLLM's FCFS LoRA scheduling);
- loading an adapter costs the cost model's ``adapter_load_s`` (from NVMe too when host memory does not cache it),
  charged to the iteration that admits the request, as a KV swap is.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from fathom.errors import FathomInputError, unknown_name_error
from fathom.specs.serving import LoRAServingSpec

DISTRIBUTIONS = ("uniform", "zipf")


def adapter_probabilities(spec: LoRAServingSpec) -> np.ndarray:
    """Probability of each adapter id 0..N-1: uniform, or finite Zipf ``p_i ~ (i+1)^-a`` (``zipf:a=A``)."""
    kind, _, args = spec.distribution.strip().lower().partition(":")
    n = spec.num_adapters
    if kind == "uniform" and not args:
        return np.full(n, 1.0 / n)
    if kind != "zipf":
        raise unknown_name_error("--adapter-dist", spec.distribution, ("uniform", "zipf:a=1.2"))
    key, _, value = args.partition("=")
    try:
        a = float(value) if key.strip() == "a" else float("nan")
    except ValueError:
        a = float("nan")
    if not a > 0 or a == float("inf"):
        raise FathomInputError(f"--adapter-dist: expected zipf:a=A with A > 0, got {spec.distribution!r}")
    weights = np.arange(1, n + 1, dtype=float) ** -a
    return weights / weights.sum()


def draw_adapters(spec: LoRAServingSpec, rng: np.random.Generator, size: int) -> np.ndarray:
    """Adapter ids of ``size`` requests, one vectorised draw."""
    return rng.choice(spec.num_adapters, size=size, p=adapter_probabilities(spec))


def parse_lora(num_adapters: int | None, rank: int | None, dist: str | None, max_per_batch: int | None,
               max_cpu: int | None, targets: str | None) -> LoRAServingSpec | None:  # fmt: skip
    """The spec of ``fathom serve --lora-adapters N --adapter-rank R [--adapter-dist D] [--max-loras-per-batch K]
    [--max-cpu-loras M] [--adapter-targets T]``; the other flags need ``--lora-adapters``."""
    if num_adapters is None:
        flags = (("--adapter-rank", rank), ("--adapter-dist", dist), ("--max-loras-per-batch", max_per_batch),
                 ("--max-cpu-loras", max_cpu), ("--adapter-targets", targets))  # fmt: skip
        given = [flag for flag, value in flags if value is not None]
        if given:
            raise FathomInputError(f"{given[0]} needs --lora-adapters N")
        return None
    for flag, value in (("--lora-adapters", num_adapters), ("--adapter-rank", rank),
                        ("--max-loras-per-batch", max_per_batch), ("--max-cpu-loras", max_cpu)):  # fmt: skip
        if value is not None and value < 1:
            raise FathomInputError(f"{flag}: must be >= 1, got {value}")
    if targets is not None and targets not in ("attention", "all-linear"):
        raise unknown_name_error("--adapter-targets", targets, ("attention", "all-linear"))
    spec = LoRAServingSpec(num_adapters=num_adapters, rank=rank or 16, distribution=dist or "uniform",
                           max_loras_per_batch=min(max_per_batch or 4, num_adapters), max_cpu_loras=max_cpu,
                           targets=targets or "attention")  # fmt: skip
    adapter_probabilities(spec)  # validates the distribution
    return spec


class LoRAPool:
    """Adapters on one replica's device: those in use (with their running requests' count) and idle ones (LRU)."""

    def __init__(self, spec: LoRAServingSpec, load_s) -> None:
        self.slots = spec.max_loras_per_batch
        self.cpu_slots = spec.max_cpu_loras or spec.num_adapters
        self._load_s = load_s  # the cost model's adapter_load_s(from_disk)
        self.users: dict[int, int] = {}  # adapter -> running requests using it
        self.idle: OrderedDict[int, None] = OrderedDict()  # on the device, unused, least recently used first
        self.host: OrderedDict[int, None] = OrderedDict()  # cached in host memory, least recently used first
        self.active = 0  # distinct adapters of the running batch
        self.loads = self.disk_loads = 0
        self.load_s = 0.0

    @classmethod
    def for_cost(cls, cost) -> LoRAPool | None:
        spec = getattr(cost, "lora", None)
        return None if spec is None else cls(spec, cost.adapter_load_s)

    def can_take(self, adapter: int | None) -> bool:
        """Whether a request of ``adapter`` may join the batch now."""
        return adapter is None or adapter in self.users or self.active < self.slots

    def acquire(self, adapter: int | None) -> float:
        """A request of ``adapter`` joins the batch: seconds to load the adapter (0 when on the device)."""
        if adapter is None:
            return 0.0
        n = self.users.get(adapter, 0)
        self.users[adapter] = n + 1
        if n:
            return 0.0
        self.active += 1
        if adapter in self.idle:
            del self.idle[adapter]
            return 0.0
        if self.active + len(self.idle) > self.slots:
            self.idle.popitem(last=False)  # evict the least recently used idle adapter
        from_disk = adapter not in self.host
        if from_disk:
            self.disk_loads += 1
            if len(self.host) >= self.cpu_slots:
                self.host.popitem(last=False)
            self.host[adapter] = None
        else:
            self.host.move_to_end(adapter)
        seconds = float(self._load_s(from_disk))
        self.loads += 1
        self.load_s += seconds
        return seconds

    def release(self, adapter: int | None) -> None:
        """A request of ``adapter`` left the batch (finished or preempted)."""
        if adapter is None:
            return
        n = self.users[adapter] - 1
        if n:
            self.users[adapter] = n
            return
        del self.users[adapter]
        self.active -= 1
        self.idle[adapter] = None

    def stats(self) -> dict[str, float]:
        return {"adapter_loads": self.loads, "adapter_disk_loads": self.disk_loads, "adapter_load_s": self.load_s}
