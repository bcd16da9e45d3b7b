"""What a training search ranks by: throughput, time to train, cost or energy.

Every objective is a score per plan, lower is better, so one sort serves all of them. For a run of ``tokens``
tokens, time = tokens / throughput, cost = GPU-hours x price and energy = GPUs x TDP x time x PUE (the same
accounting as ``fathom train --tokens``); without ``tokens`` the same quantities are given per million tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fathom.errors import FathomInputError
from fathom.specs.hardware import Cluster

OBJECTIVES: tuple[str, ...] = ("throughput", "time", "cost", "energy")
SECONDS_PER_DAY = 86400.0
PER_MILLION = 1e6


@dataclass(frozen=True)
class Objective:
    name: str
    price_per_gpu_hour: float | None
    watts_per_gpu: float  # TDP x PUE: what one GPU draws from the grid
    tokens: float | None

    @classmethod
    def build(cls, name: str, cluster: Cluster, tokens: float | None, price_per_gpu_hour: float | None) -> Objective:
        if name not in OBJECTIVES:
            raise FathomInputError(f"objective: unknown value {name!r} (valid: {', '.join(OBJECTIVES)})")
        price = price_per_gpu_hour if price_per_gpu_hour is not None else cluster.device.price_per_gpu_hour_usd
        if name == "cost" and not price:
            raise FathomInputError(
                f"price_per_gpu_hour: objective cost needs a price and {cluster.device.name} has no catalog price"
            )
        if tokens is not None and tokens <= 0:
            raise FathomInputError("tokens: must be positive")
        watts = cluster.device.tdp_w * cluster.system.pue
        return cls(name=name, price_per_gpu_hour=price, watts_per_gpu=watts, tokens=tokens)

    @property
    def higher_is_better(self) -> bool:
        return self.name == "throughput"

    @property
    def unit(self) -> str:
        run = self.tokens is not None
        return {
            "throughput": "tokens/s",
            "time": "days" if run else "hours per 1M tokens",
            "cost": "USD" if run else "USD per 1M tokens",
            "energy": "MWh" if run else "kWh per 1M tokens",
        }[self.name]

    def value(self, tokens_per_s: np.ndarray, gpus: np.ndarray) -> np.ndarray:
        """The objective in its display unit (``unit``)."""
        tps = np.asarray(tokens_per_s, dtype=float)
        if self.name == "throughput":
            return tps
        seconds = (self.tokens if self.tokens is not None else PER_MILLION) / tps
        gpu_hours = seconds * np.asarray(gpus, dtype=float) / 3600.0
        if self.name == "time":
            return seconds / (SECONDS_PER_DAY if self.tokens is not None else 3600.0)
        if self.name == "cost":
            return gpu_hours * self.price_per_gpu_hour
        kwh = gpu_hours * self.watts_per_gpu / 1e3
        return kwh / 1e3 if self.tokens is not None else kwh

    def score(self, tokens_per_s: np.ndarray, gpus: np.ndarray) -> np.ndarray:
        """Lower is better."""
        v = self.value(tokens_per_s, gpus)
        return -v if self.higher_is_better else v

    def days(self, tokens_per_s: np.ndarray) -> np.ndarray:
        """Days to train ``tokens`` (infinite without a token count, so no plan is dropped for time)."""
        if self.tokens is None:
            return np.zeros_like(np.asarray(tokens_per_s, dtype=float))
        return self.tokens / np.asarray(tokens_per_s, dtype=float) / SECONDS_PER_DAY
