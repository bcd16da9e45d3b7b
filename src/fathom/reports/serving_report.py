"""``fathom serve --plot`` and ``--report``: a serving run as one PNG, or as a self-contained HTML page."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from fathom.reports.html import Image, Section, Table, write_html
from fathom.reports.output import write_atomic
from fathom.reports.serving_figures import (
    ServingPlotData,
    composite_figure,
    figure_png,
    latency_cdf_figure,
    request_scatter_figure,
    timeline_figure,
)
from fathom.serving.metrics import ServingReport
from fathom.serving.simulator import SimulationResult

MAX_REPLICA_ROWS = 64
_LATENCIES = (("TTFT", "ttft_s"), ("TPOT (after the first token)", "tpot_s"), ("ITL", "itl_s"),
              ("end-to-end", "e2e_s"))  # fmt: skip
_SUMMARY = (
    ("completed requests", "completed"), ("rejected requests", "rejected"),
    ("requests/s", "throughput.requests_per_s"), ("output tokens/s", "throughput.output_tokens_per_s"),
    ("total tokens/s", "throughput.total_tokens_per_s"), ("goodput (requests/s within SLOs)", "goodput_requests_per_s"),
    ("max concurrency", "max_concurrency"), ("KV cache per replica (GiB)", "kv_cache_gib"),
    ("preemptions", "preemptions"), ("GPU-seconds", "gpu_seconds"),
    ("energy per output token (J)", "energy_per_token_j"),
    ("cost per million output tokens (USD)", "cost_per_million_tokens"), ("makespan (s)", "duration_s"),
)  # fmt: skip


def _lookup(data: Mapping, dotted: str) -> object:
    for part in dotted.split("."):
        data = data[part]
    return data


def metrics_section(report: ServingReport) -> Section:
    """The report's numbers, each beside its stable JSON key."""
    data = report.model_dump(mode="json")
    latency = Table(
        ("metric (seconds)", "p50", "p90", "p95", "p99", "mean", "JSON key"),
        [(name, *(data[key][p] for p in ("p50", "p90", "p95", "p99", "mean")), key) for name, key in _LATENCIES],
        "Latency of completed requests",
    )
    summary = Table(("metric", "value", "JSON key"), [(n, _lookup(data, k), k) for n, k in _SUMMARY],
                    "Throughput, capacity and cost")  # fmt: skip
    tables = [latency, summary]
    if report.rejected_reasons:
        tables.append(Table(("reason", "requests"), list(report.rejected_reasons.items()), "Rejected requests"))
    notes = ("TTFT includes queueing. TPOT is the mean time per output token after the first, per request; ITL "
             "pools every gap between consecutive tokens. Throughput and goodput divide by the makespan (first "
             "arrival to last completion).",)  # fmt: skip
    return Section("Metrics", notes, tables)


def replicas_section(result: SimulationResult) -> Section:
    rows = [(r.index, r.role, r.scheduler, r.iterations, r.busy_s, r.preemptions, r.prefill_tokens, r.decode_tokens,
             r.prefix_hit_tokens) for r in result.replicas[:MAX_REPLICA_ROWS]]  # fmt: skip
    table = Table(("replica", "role", "scheduler", "iterations", "busy (s)", "preemptions", "prefill tokens",
                   "decode tokens", "prefix-cache hit tokens"), rows)  # fmt: skip
    more = len(result.replicas) - MAX_REPLICA_ROWS
    notes = [f"Simulated time: {result.total_time_s:.6g} s" + (" (stopped at the time limit)." if result.truncated
                                                                  else ".")]  # fmt: skip
    if more > 0:
        notes.append(f"The first {MAX_REPLICA_ROWS} of {len(result.replicas)} replicas are listed.")
    return Section("Replicas", notes, [table])


def figures_section(data: ServingPlotData) -> Section:
    images = [
        Image(figure_png(timeline_figure(data)), "KV-cache use, queued and running requests over simulated time "
              "(time-weighted mean per bin; one line per pool when prefill and decode are disaggregated).",
              "timeline"),
        Image(figure_png(latency_cdf_figure(data)), "Cumulative distributions of TTFT, TPOT (after the first token) "
              "and end-to-end latency of completed requests, with p50 and p99 and the SLOs when given.",
              "latency CDFs"),
        Image(figure_png(request_scatter_figure(data)), "TTFT and end-to-end latency of each completed request by "
              "its arrival time, coloured by its input length.", "latency per request"),
    ]  # fmt: skip
    return Section("Figures", (), (), images)


def write_serving_files(serving_report: ServingReport, result: SimulationResult, *, plot_path: str | Path | None = None,
                        report_path: str | Path | None = None, inputs: Mapping[str, object] | None = None,
                        title: str = "", slo_ttft_s: float | None = None,
                        slo_tpot_s: float | None = None) -> None:  # fmt: skip
    """``plot_path``: ``.png``, one figure with every view, or ``.html``, a page with the metrics and the figures.
    ``report_path`` (``.html``): the full report, with the ``inputs`` as given and the replicas too."""
    data = ServingPlotData.from_result(result, slo_ttft_s, slo_tpot_s)
    title = title or "fathom serve"
    plot_html = plot_path is not None and Path(plot_path).suffix.lower() == ".html"
    figures = figures_section(data) if plot_html or report_path is not None else Section("Figures")
    if plot_path is not None and plot_html:
        write_html(plot_path, title, [metrics_section(serving_report), figures])
    elif plot_path is not None:
        write_atomic(plot_path, figure_png(composite_figure(data, title)))
    if report_path is not None:
        sections = [Section("Inputs", (), [Table.from_mapping(dict(inputs or {}))]), metrics_section(serving_report),
                    figures, replicas_section(result)]  # fmt: skip
        write_html(report_path, title, sections, subtitle="Serving simulation report")
