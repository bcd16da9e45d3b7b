"""``fathom validate claims``: the field's headline claims, predicted from first principles.

Each claim of ``data/claims/*.yaml`` holds one or more figures; each figure is a scenario pair run by a runner of
``fathom.validation.claim_runners``. The tolerance is one rule for every figure (no per-claim constants): the
claimed value +-25%, or the claimed range; a claim stated as a bound ("10+%", "up to 23%") keeps its open side
open only where the claim is one-sided in that direction. A figure passes when the prediction lies in its band
and its direction (technique better or worse than baseline) is the claimed one. A claim passes when every figure
that could be set up passes; figures whose inputs or levers are missing are listed with what is missing.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass, field
from importlib import resources

import yaml

from fathom.errors import FathomInputError
from fathom.validation.claim_runners import MISSING_KINDS, RUNNERS

TOLERANCE = 0.25  # the acceptance rule, the same for every figure
COMPUTES = ("ratio", "gain_pct", "reduction_pct", "value")
NEUTRAL = {"ratio": 1.0, "gain_pct": 0.0, "reduction_pct": 0.0}


@functools.cache
def load_claims() -> list[dict]:
    """Every claim file (``data/claims/NN-id.yaml``, one claim each, in number order), parsed once per process."""
    folder = resources.files("fathom.validation").joinpath("data").joinpath("claims")
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".yaml")), key=lambda f: f.name)
    return [yaml.safe_load(f.read_text("utf-8")) for f in files]


def band(claimed: dict) -> tuple[float, float]:
    """The accepted interval of a claimed figure: its range, or its value +-25% (one-sided bounds stay open)."""
    if "range" in claimed:
        low, high = claimed["range"]
        return float(low), float(high)
    v = float(claimed["value"])
    low, high = v * (1 - TOLERANCE), v * (1 + TOLERANCE)
    if claimed.get("at_least"):
        high = math.inf
    return (min(low, high), max(low, high))


def combine(compute: str, baseline: float, technique: float) -> float:
    """The claimed kind of figure from the two scenarios' metric."""
    if compute == "ratio":
        return technique / baseline
    if compute == "gain_pct":
        return (technique / baseline - 1.0) * 100.0
    if compute == "reduction_pct":
        return (1.0 - technique / baseline) * 100.0
    if compute == "value":
        return technique
    raise FathomInputError(f"claims: compute {compute!r} unknown (valid: {', '.join(COMPUTES)})")


@dataclass
class FigureResult:
    name: str
    status: str  # pass | fail | missing_input | missing_lever
    claimed: float | None
    band: tuple[float, float] | None
    predicted: float | None = None
    baseline: float | None = None  # the baseline scenario's own figure where it has one (largest-fit searches)
    direction_ok: bool | None = None
    note: str = ""


@dataclass
class ClaimResult:
    number: int
    id: str
    citation: str
    claim: str
    status: str  # pass | fail | not_reproduced
    figures: list[FigureResult] = field(default_factory=list)

    @property
    def direction_ok(self) -> bool | None:
        checks = [f.direction_ok for f in self.figures if f.direction_ok is not None]
        return all(checks) if checks else None


def _direction_ok(fig: dict, predicted: float, pairs) -> bool | None:
    """Whether the technique moves the metric the claimed way; ``None`` where the claim states no direction."""
    want = fig.get("direction")
    if want is None:
        return None
    compute = fig["compute"]
    if compute == "value":  # a search's two sides: the technique's value against the baseline's
        base = pairs[0][0]
        return None if math.isnan(base) else (predicted > base) == (want == "up")
    # "up": the figure lies above its neutral value (a ratio above 1, a positive gain or reduction); "down": below
    return (predicted > NEUTRAL[compute]) == (want == "up")


def evaluate_figure(fig: dict) -> FigureResult:
    claimed = fig.get("claimed", {})
    value = claimed.get("value")
    if fig["kind"] in MISSING_KINDS:
        return FigureResult(fig["name"], fig["kind"], value, None, note=" ".join(fig["missing"].split()))
    runner = RUNNERS.get(fig["kind"])
    if runner is None:
        raise FathomInputError(f"claims: kind {fig['kind']!r} unknown (valid: {', '.join((*RUNNERS, *MISSING_KINDS))})")
    pairs, note = runner(fig)
    figures = [combine(fig["compute"], b, t) for b, t in pairs]
    reduce = fig.get("reduce", "mean")
    predicted = {"max": max, "min": min, "mean": lambda xs: sum(xs) / len(xs)}[reduce](figures)
    low, high = band(claimed)
    direction = _direction_ok(fig, predicted, pairs)
    baseline = pairs[0][0] if fig["compute"] == "value" and not math.isnan(pairs[0][0]) else None
    ok = low <= predicted <= high and direction is not False
    return FigureResult(fig["name"], "pass" if ok else "fail", value if value is not None else None, (low, high),
                        predicted=predicted, baseline=baseline, direction_ok=direction, note=note)  # fmt: skip


def evaluate_claim(entry: dict) -> ClaimResult:
    figures = [evaluate_figure(f) for f in entry["figures"]]
    evaluated = [f for f in figures if f.status in ("pass", "fail")]
    if not evaluated:
        status = "not_reproduced"
    else:
        status = "pass" if all(f.status == "pass" for f in evaluated) else "fail"
    return ClaimResult(entry["number"], entry["id"], entry["citation"], " ".join(entry["claim"].split()), status,
                       figures)  # fmt: skip


def validate_claims(ids: list[str] | None = None) -> list[ClaimResult]:
    """Evaluate every claim (or those named in ``ids``: a claim's id or its number in the issue's list)."""
    claims = load_claims()
    if ids:
        by_number = {str(c["number"]): c["id"] for c in claims}
        ids = [by_number.get(i.strip(), i) for i in ids]
        known = {c["id"] for c in claims}
        for i in ids:
            if i not in known:
                from fathom.errors import unknown_name_error

                raise unknown_name_error("claim (an id or a number 1-14)", i, sorted(known))
        claims = [c for c in claims if c["id"] in ids]
    return [evaluate_claim(c) for c in claims]


def summarize_claims(results: list[ClaimResult]) -> dict:
    """Counts of passing, failing and not reproducible claims, and whether every direction is right."""
    return {
        "claims": len(results),
        "passed": sum(r.status == "pass" for r in results),
        "failed": sum(r.status == "fail" for r in results),
        "not_reproduced": sum(r.status == "not_reproduced" for r in results),
        "directions_right": sum(r.direction_ok is not False for r in results if r.status != "not_reproduced"),
        "evaluated": sum(r.status != "not_reproduced" for r in results),
    }


def as_dict(result: ClaimResult) -> dict:
    out = asdict(result)
    out["direction_ok"] = result.direction_ok
    for f in out["figures"]:
        if f["band"] is not None:
            f["band"] = [None if math.isinf(x) else x for x in f["band"]]
    return out
