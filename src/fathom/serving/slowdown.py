"""Per-request slowdown: each request's latencies over the same request run alone, and SLOs on their percentiles.

Splitwise (Patel et al. ISCA'24, Sec. 6; artifact github.com/Mutinifni/splitwise-sim notebooks/plots.ipynb) judges a
cluster by slowdowns, not seconds: TTFT, TBT and E2E of every request divided by the same request's latencies
on an idle reference machine, each slowdown held under a bound at several percentiles at once.

The isolated run of a request with ``P`` prompt and ``O`` output tokens on a cost model: its prefill alone
(``P`` new tokens, no cached context) emits the first token; every later token is one decode step at batch 1
attending to ``P + k`` tokens (k = 1 .. O-1). Isolated TTFT = the prefill, isolated TBT = the mean decode step
(the artifact's profiled token time of a batch-1 request, notebooks/perf_model.py; for ``O = 1`` the one step at
``P + 1``), isolated E2E = TTFT + the decode steps. Measured TBT is the artifact's own: (E2E - TTFT) / O, divided
by all ``O`` output tokens, the first included (scheduler.py ``get_results``), so a one-token request has TBT 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from fathom.errors import FathomInputError
from fathom.serving.cost import StepCostModel
from fathom.serving.request import Request, RequestState

METRICS: tuple[str, ...] = ("ttft", "tbt", "e2e")
_EMPTY = np.empty(0, dtype=np.int64)


class IsolatedLatency:
    """Latencies of requests run alone on one cost model; decode steps are computed once per context length."""

    def __init__(self, cost: StepCostModel) -> None:
        self.cost = cost
        self._decode_cum = np.zeros(1)  # _decode_cum[c] = sum of decode steps at contexts 1..c
        self._prefill: dict[int, float] = {}

    def _decode_steps_upto(self, context: int) -> None:
        have = self._decode_cum.size - 1
        if context <= have:
            return
        steps = [self.cost.step_time_s(_EMPTY, _EMPTY, np.array([c])) for c in range(have + 1, context + 1)]
        self._decode_cum = np.concatenate([self._decode_cum, self._decode_cum[-1] + np.cumsum(steps)])

    def prefill_s(self, prompt: int) -> float:
        if prompt not in self._prefill:
            self._prefill[prompt] = float(self.cost.step_time_s(np.array([prompt]), np.array([0]), _EMPTY))
        return self._prefill[prompt]

    def latencies(self, prompts: np.ndarray, outputs: np.ndarray) -> dict[str, np.ndarray]:
        """Isolated ``ttft``, ``tbt`` (mean decode step; the step at ``P + 1`` for one output token), ``e2e`` s."""
        prompts, outputs = np.asarray(prompts, dtype=np.int64), np.asarray(outputs, dtype=np.int64)
        if prompts.size == 0:
            return {m: np.empty(0) for m in METRICS}
        self._decode_steps_upto(int((prompts + outputs).max()))
        ttft = np.array([self.prefill_s(int(p)) for p in prompts])
        decode = self._decode_cum[prompts + outputs - 1] - self._decode_cum[prompts]  # contexts P+1 .. P+O-1
        first_step = self._decode_cum[prompts + 1] - self._decode_cum[prompts]  # context P+1: a one-token request
        tbt = np.where(outputs > 1, decode / np.maximum(outputs - 1, 1), first_step)
        return {"ttft": ttft, "tbt": tbt, "e2e": ttft + decode}


def slowdowns(requests: Sequence[Request], reference: IsolatedLatency) -> dict[str, np.ndarray]:
    """Per finished request: measured / isolated TTFT, TBT ((E2E - TTFT) / O over the mean isolated decode step,
    Splitwise's artifact) and E2E."""
    done = [r for r in requests if r.state is RequestState.FINISHED]
    prompts = np.array([r.input_tokens for r in done], dtype=np.int64)
    outputs = np.array([r.output_tokens for r in done], dtype=np.int64)
    alone = reference.latencies(prompts, outputs)
    first = np.array([r.first_token_s - r.arrival_s for r in done], dtype=float)
    e2e = np.array([r.finished_s - r.arrival_s for r in done], dtype=float)
    tbt = (e2e - first) / np.maximum(outputs, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return {"ttft": first / alone["ttft"], "tbt": tbt / alone["tbt"], "e2e": e2e / alone["e2e"]}


def parse_slo(slo: Mapping) -> dict[str, dict[float, float]]:
    """``{metric: {percentile: max slowdown}}`` with metric in ``METRICS``; a one-line error names a bad field."""
    out: dict[str, dict[float, float]] = {}
    for metric, bounds in dict(slo).items():
        if metric not in METRICS:
            raise FathomInputError(f"slo_slowdown: unknown metric {metric!r} (valid: {', '.join(METRICS)})")
        if not isinstance(bounds, Mapping) or not bounds:
            raise FathomInputError(f"slo_slowdown.{metric}: give {{percentile: max slowdown}}, got {bounds!r}")
        parsed = {float(p): float(v) for p, v in bounds.items()}
        if any(not 0 < p <= 100 for p in parsed) or any(not v >= 1.0 for v in parsed.values()):
            raise FathomInputError(
                f"slo_slowdown.{metric}: percentiles must be in (0, 100] and bounds >= 1, got {bounds}"
            )
        out[metric] = parsed
    return out


def slowdown_report(values: Mapping[str, np.ndarray], slo: Mapping[str, Mapping[float, float]] | None) -> dict:
    """P50/P90/P99 (and any percentile the SLO names) of each slowdown, and whether every SLO bound holds."""
    report: dict = {}
    ok = True
    for metric in METRICS:
        v = np.asarray(values[metric], dtype=float)
        v = v[~np.isnan(v)]
        bounds = dict((slo or {}).get(metric, {}))
        pcts = sorted({50.0, 90.0, 99.0, *bounds})
        got = {p: (float(np.percentile(v, p)) if v.size else None) for p in pcts}
        report[metric] = {f"p{p:g}": x for p, x in got.items()}
        for p, bound in bounds.items():
            ok &= got[p] is not None and got[p] <= bound
    if slo is not None:
        report["meets_slo"] = bool(ok)
    return report
