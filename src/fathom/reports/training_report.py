"""``fathom train --report`` and ``fathom plan train --report``: a training estimate or a plan search as one
self-contained HTML page (inputs, the JSON keys' numbers, memory and step-time figures, the ranked plans and
their Pareto front).

Figures use ``matplotlib.figure.Figure`` directly (no pyplot: no display, no global state).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from matplotlib.figure import Figure

from fathom.reports.html import Image, Section, Table, write_html
from fathom.reports.serving_figures import figure_png
from fathom.search.training_report import RankedPlan, TrainingSearchResult, describe
from fathom.training.result import TrainingEstimate

_RESULTS = (
    ("step time (s)", "step_time_s"),
    ("tokens/s", "tokens_per_s"),
    ("tokens/s per GPU", "tokens_per_s_per_gpu"),
    ("model TFLOP/s per GPU", "tflops_per_gpu"),
    ("MFU", "mfu"),
    ("HFU", "hfu"),
    ("fits in memory", "fits"),
    ("peak memory per GPU (GiB)", "memory.peak_gib"),
    ("capacity (GiB)", "memory.capacity_gib"),
    ("headroom (GiB)", "memory.headroom_gib"),
    ("gradient accumulation steps", "grad_accum_steps"),
    ("bottleneck", "bottleneck"),
)
_RUN = (
    ("days", "days"),
    ("GPU-hours", "gpu_hours"),
    ("energy (MWh)", "energy_mwh"),
    ("cost (USD)", "cost_usd"),
    ("operational CO2e (t)", "co2e_t"),
)
# The phase-aware energy and carbon figures `fathom train` prints (fathom.energy), where the run has them.
_ENERGY = (
    ("average board power per GPU (W)", "avg_power_w_per_gpu"),
    ("energy: GPUs at their limit, TDP x time x PUE (MWh)", "energy_mwh"),
    ("energy: GPUs, phase-aware (MWh)", "energy_phase_mwh"),
    ("energy: whole servers, phase-aware (MWh)", "energy_server_mwh"),
    ("PUE", "pue"),
    ("region", "region"),
    ("grid intensity (gCO2e/kWh)", "grid_gco2e_per_kwh"),
    ("operational CO2e (t)", "co2e_t"),
    ("embodied CO2e (t)", "embodied_co2e_t"),
    ("power cap (W)", "power_cap_w"),
    ("step time under the cap / uncapped", "power_cap_slowdown"),
)


def _lookup(data: Mapping, dotted: str) -> object:
    for part in dotted.split("."):
        data = data[part]
    return data


def _positive(parts: Mapping[str, float]) -> list[tuple[str, float]]:
    return [(k.replace("_", " "), v) for k, v in parts.items() if v > 0]


def memory_figure(est: TrainingEstimate) -> Figure:
    """Memory per GPU stacked by component, against the device's capacity."""
    fig = Figure(figsize=(10, 2.4))
    ax = fig.subplots(gridspec_kw=dict(left=0.03, right=0.98, top=0.8, bottom=0.42))
    left = 0.0
    for i, (name, gib) in enumerate(_positive(est.memory.breakdown)):
        ax.barh(0, gib, left=left, color=f"C{i % 10}", label=f"{name} {gib:.3g}")
        left += gib
    ax.axvline(est.memory.capacity_gib, color="C3", lw=2, ls="--", label=f"capacity {est.memory.capacity_gib:.0f}")
    ax.set_yticks([])
    ax.set_xlabel("GiB per GPU")
    ax.set_title(f"memory per GPU: {est.memory.peak_gib:.3g} GiB peak", loc="left", fontsize="medium")
    ax.legend(ncol=4, fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.55), frameon=False)
    return fig


def step_time_figure(est: TrainingEstimate) -> Figure:
    """A waterfall of the step's components: each bar starts where the previous one ended."""
    parts = _positive(est.time_breakdown)
    fig = Figure(figsize=(10, 0.45 * (len(parts) + 1) + 1.0))
    ax = fig.subplots(gridspec_kw=dict(left=0.17, right=0.9, top=0.88, bottom=0.12))
    start = 0.0
    names = [n for n, _ in parts] + ["total"]
    for i, (_, seconds) in enumerate(parts):
        ax.barh(i, seconds, left=start, color=f"C{i % 10}")
        ax.text(start + seconds, i, f" {seconds:.3g} s", va="center", fontsize="small")
        start += seconds
    ax.barh(len(parts), est.step_time_s, color="0.3")
    ax.text(est.step_time_s, len(parts), f" {est.step_time_s:.3g} s", va="center", fontsize="small")
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xlabel("seconds per optimizer step")
    ax.set_title("step time by component", loc="left", fontsize="medium")
    ax.grid(axis="x", alpha=0.3)
    return fig


def estimate_sections(est: TrainingEstimate) -> list[Section]:
    data = est.model_dump(mode="json")
    results = Table(("metric", "value", "JSON key"), [(n, _lookup(data, k), k) for n, k in _RESULTS], "Results")
    tables = [
        results,
        Table(("component", "GiB per GPU"), list(est.memory.breakdown.items()), "Memory breakdown"),
        Table(("component", "seconds per step"), list(est.time_breakdown.items()), "Step-time breakdown"),
    ]
    if est.run is not None:
        run = est.run.model_dump()
        tables.append(Table(("metric", "value", "JSON key"), [(n, run[k], f"run.{k}") for n, k in _RUN], "The run"))
        if est.run.avg_power_w_per_gpu is not None:
            rows = [(n, run[k], f"run.{k}") for n, k in _ENERGY if run[k] is not None]
            tables.append(Table(("metric", "value", "JSON key"), rows, "Energy and carbon"))
    elif est.power_cap_w is not None:
        rows = [("power cap (W)", est.power_cap_w, "power_cap_w"),
                ("step time under the cap / uncapped", est.power_cap_slowdown, "power_cap_slowdown")]  # fmt: skip
        tables.append(Table(("metric", "value", "JSON key"), rows, "Power cap"))
    if est.reliability is not None:
        rel = est.reliability.model_dump(mode="json")
        rows = [(k.replace("_", " "), v, f"reliability.{k}") for k, v in rel.items() if v is not None]
        tables.append(Table(("metric", "value", "JSON key"), rows, "Fault tolerance"))
    images = [
        Image(
            figure_png(memory_figure(est)),
            "Memory per GPU by component; the dashed line is the capacity.",
            "memory breakdown",
        ),
        Image(
            figure_png(step_time_figure(est)),
            "Where an optimizer step's time goes, component by component.",
            "step-time waterfall",
        ),
    ]
    return [Section("Results", (), tables), Section("Figures", (), (), images)]


def write_training_report(
    path: str | Path, est: TrainingEstimate, inputs: Mapping[str, object] | None = None, title: str = ""
) -> None:
    title = title or f"fathom train: {est.model} on {est.num_gpus} x {est.gpu}"
    plan = Table.from_mapping(est.plan, "Plan")
    sections = [Section("Inputs", (), [Table.from_mapping(dict(inputs or {})), plan]), *estimate_sections(est)]
    write_html(path, title, sections, subtitle="Training estimate report")


def pareto_figure(result: TrainingSearchResult) -> Figure:
    """Ranked plans (and the Pareto front) by throughput against GPUs, or against peak memory for one GPU count."""
    by_gpus = len(result.gpu_counts) > 1
    fig = Figure(figsize=(9, 4.5))
    ax = fig.subplots(gridspec_kw=dict(left=0.1, right=0.97, top=0.9, bottom=0.12))

    def x(p: RankedPlan) -> float:
        return p.num_gpus if by_gpus else p.memory.peak_gib

    ax.scatter(
        [x(p) for p in result.plans],
        [p.tokens_per_s for p in result.plans],
        s=18,
        color="C0",
        label=f"best {len(result.plans)} plans",
    )
    # The search's front trades throughput against cost and GPUs; with one GPU count that is one point, so the
    # figure draws the front of what it plots instead: least memory for the throughput.
    front = result.pareto if by_gpus else [
        p for p in result.plans
        if not any(q.memory.peak_gib <= p.memory.peak_gib and q.tokens_per_s >= p.tokens_per_s
                   and (q.memory.peak_gib, q.tokens_per_s) != (p.memory.peak_gib, p.tokens_per_s) for q in result.plans)
    ]  # fmt: skip
    if front:
        front = sorted(front, key=x)
        label = "Pareto front" if by_gpus else "Pareto front (memory, tokens/s)"
        ax.plot([x(p) for p in front], [p.tokens_per_s for p in front], "o--", color="C3", ms=5, label=label)
    if by_gpus:
        ax.set_xscale("log", base=2)
    ax.set_xlabel("GPUs" if by_gpus else "peak memory per GPU (GiB)")
    ax.set_ylabel("tokens/s")
    ax.set_title("throughput of the ranked plans", loc="left", fontsize="medium")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def _plan_rows(plans: list[RankedPlan]) -> list[tuple]:
    return [
        (
            p.rank,
            p.num_gpus,
            describe(p),
            p.step_time_s,
            p.tokens_per_s,
            p.mfu,
            p.memory.peak_gib,
            p.bottleneck.replace("_", " "),
            p.run.days if p.run else None,
            p.run.cost_usd if p.run else None,
            p.objective_value,
        )
        for p in plans
    ]


def write_search_report(
    path: str | Path, result: TrainingSearchResult, inputs: Mapping[str, object] | None = None, title: str = ""
) -> None:
    title = title or f"fathom plan train: {result.model} on {result.gpu}"
    columns = (
        "rank",
        "GPUs",
        "plan",
        "step (s)",
        "tokens/s",
        "MFU",
        "peak GiB",
        "bottleneck",
        "days",
        "cost (USD)",
        f"objective ({result.objective_unit})",
    )
    counts = ", ".join(str(n) for n in result.gpu_counts)
    summary = (
        f"{result.space_size:,} plans searched on {counts} GPUs, {result.fits_memory:,} fit in memory, "
        f"{result.feasible:,} feasible, in {result.seconds:.2f} s; objective: {result.objective}."
    )
    sections = [Section("Inputs", (), [Table.from_mapping(dict(inputs or {}))])]
    if result.feasible == 0:
        closest = [Table(columns, _plan_rows([result.closest]), "Closest plan")] if result.closest else []
        sections.append(Section("No feasible plan", (summary, result.message or ""), closest))
    else:
        tables = [Table(columns, _plan_rows(result.plans), f"Best {len(result.plans)} plans by {result.objective}")]
        if result.pareto:
            tables.append(Table(columns, _plan_rows(result.pareto), "Pareto front: throughput vs cost vs GPU count"))
        image = Image(
            figure_png(pareto_figure(result)),
            "Throughput of the ranked plans; the dashed line joins the Pareto front.",
            "Pareto plot",
        )
        sections.append(Section("Ranking", (summary, *result.why), tables, [image]))
        best = result.plans[0]
        for s in estimate_sections(best):
            sections.append(Section(f"Best plan: {s.heading.lower()}", s.paragraphs, s.tables, s.images))
    write_html(path, title, sections, subtitle="Training plan search report")


def write_search_plot(
    path: str | Path, result: TrainingSearchResult, inputs: Mapping[str, object] | None = None
) -> None:
    """``--plot``: the Pareto figure alone as ``.png``, or the search report (figure and tables) as ``.html``."""
    if str(path).lower().endswith(".png"):
        from fathom.reports.output import write_atomic
        from fathom.reports.serving_figures import figure_png

        write_atomic(path, figure_png(pareto_figure(result)))
    else:
        write_search_report(path, result, inputs)
