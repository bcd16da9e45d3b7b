"""How much work one HTTP request may ask for, and the errors a request over a limit gets.

An estimate is analytical (its cost does not grow with the GPU count), but a plan search grows with the GPU counts
and axes it enumerates, and a serving simulation with its requests and their output tokens. The limits keep every
request's work bounded, so a shared server stays responsive; a deadline catches what the limits cannot foresee.
"""

from __future__ import annotations

from dataclasses import dataclass


class OverLimitError(Exception):
    """A request asks for more work than the server allows (HTTP 413, with this one-line message)."""


class WorkTimeoutError(Exception):
    """The work ran past the server's deadline (HTTP 408)."""


class BusyError(Exception):
    """Every worker is taken (HTTP 429)."""


@dataclass(frozen=True)
class Limits:
    max_gpus: int = 1_048_576  # GPUs of one estimated or simulated deployment
    max_search_gpus: int = 16_384  # the largest GPU count a plan search may enumerate
    max_search_plans: int = 5_000_000  # plans enumerated by one search, over all its GPU counts
    max_requests: int = 20_000  # simulated requests per run (rate x duration when only a duration is given)
    max_output_tokens: float = 1e7  # requests x mean output length: bounds the simulator's decode iterations
    max_input_tokens: float = 1e8  # requests x mean input length: bounds prefill work
    max_sweep_rates: int = 12  # runs of one throughput-vs-load sweep
    max_search_simulations: int = 60  # candidate deployments one serving search may simulate
    max_config_chars: int = 100_000  # a pasted config.json
    timeout_s: float = 30.0  # deadline of a request answered at once
    job_timeout_s: float = 300.0  # deadline of a background job
    workers: int = 2  # simulations and searches running at once
    max_jobs: int = 64  # jobs remembered; the oldest finished ones are forgotten first


def check(value: float, limit: float, what: str, hint: str = "") -> None:
    """Raise ``OverLimitError`` naming ``what`` when ``value`` is over ``limit``."""
    if value > limit:
        shown = f"{value:,.0f}" if value >= 1 else f"{value:g}"
        tail = f"; {hint}" if hint else ""
        raise OverLimitError(f"{what}: {shown} is over this server's limit of {limit:,.0f}{tail}")
