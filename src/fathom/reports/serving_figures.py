"""Figures of a serving simulation: the load over time, the latency distributions, latency per request.

Built on ``matplotlib.figure.Figure`` directly (no pyplot, so no display, no global state, safe in threads and in
a server). Long runs are shrunk first (``fathom.reports.series``): a 100,000-request run draws in about a second.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure

from fathom.reports.series import binned_mean, cdf_points, subset
from fathom.serving.metrics import requests_table
from fathom.serving.request import RequestState
from fathom.serving.simulator import ReplicaStats, SimulationResult

TIMELINE_BINS = 1000
SCATTER_POINTS = 20_000
_POOLS = {"both": "all replicas", "prefill": "prefill pool", "decode": "decode pool"}
_ROW = dict(left=0.05, right=0.98, top=0.9, bottom=0.13, wspace=0.22)  # margins of a one-row figure
_TIMELINE_PANELS = (("kv_percent", "KV-cache use (%)"), ("waiting", "queued requests"), ("running", "running requests"))


@dataclass(frozen=True)
class Timeline:
    """Per pool (all replicas, or the prefill and decode pools), the time-weighted mean per bin of the running
    and waiting requests (summed over the pool's replicas) and of its KV-cache blocks in use (% of its capacity)."""

    time_s: np.ndarray  # bin centres
    bin_s: float
    pools: dict[str, dict[str, np.ndarray]]


def build_timeline(replicas: Sequence[ReplicaStats], end_s: float, bins: int = TIMELINE_BINS) -> Timeline:
    sampled = [float(r.timeseries["time_s"][-1]) for r in replicas if r.timeseries["time_s"].size]
    end = max([end_s, *sampled])
    if not sampled or end <= 0.0:
        return Timeline(np.empty(0), 0.0, {})
    edges = np.linspace(0.0, end, bins + 1)
    pools: dict[str, dict[str, np.ndarray]] = {}
    capacity: dict[str, int] = {}
    for rep in replicas:
        label = _POOLS.get(rep.role, rep.role)
        acc = pools.setdefault(label, {name: np.zeros(bins) for name in ("running", "waiting", "kv_percent")})
        ts = rep.timeseries
        for name, key in (("running", "running"), ("waiting", "waiting"), ("kv_percent", "kv_blocks_used")):
            acc[name] += binned_mean(ts["time_s"], ts[key], edges)
        capacity[label] = capacity.get(label, 0) + rep.kv_capacity_blocks
    for label, acc in pools.items():
        acc["kv_percent"] *= 100.0 / max(capacity[label], 1)
    return Timeline((edges[:-1] + edges[1:]) / 2, float(edges[1] - edges[0]), pools)


@dataclass(frozen=True)
class ServingPlotData:
    """What the serving figures draw: the per-request table, the timeline and the SLOs (seconds; None = none)."""

    table: dict[str, np.ndarray]
    timeline: Timeline
    slo_ttft_s: float | None = None
    slo_tpot_s: float | None = None

    @classmethod
    def from_result(cls, result: SimulationResult, slo_ttft_s: float | None = None,
                    slo_tpot_s: float | None = None) -> ServingPlotData:  # fmt: skip
        return cls(requests_table(result.requests), build_timeline(result.replicas, result.total_time_s),
                   slo_ttft_s, slo_tpot_s)  # fmt: skip

    @property
    def finished(self) -> np.ndarray:
        return self.table["state"] == str(RequestState.FINISHED)


def _fmt_s(seconds: float) -> str:
    return f"{seconds:.3g} s" if seconds >= 1 else f"{seconds * 1e3:.3g} ms"


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def _log_if_wide(values: np.ndarray) -> str:
    """Log scale when positive values span more than two decades (a linear axis would hide the body)."""
    pos = values[values > 0]
    return "log" if pos.size and pos.max() > 100 * pos.min() else "linear"


def draw_timeline(axes, data: ServingPlotData) -> None:
    """KV-cache use, queue length and running requests over simulated time, one line per pool."""
    tl = data.timeline
    for ax, (key, label) in zip(axes, _TIMELINE_PANELS, strict=True):
        ax.set_ylabel(label)
        if not tl.pools:
            _empty(ax, "no iterations ran")
            continue
        for pool, series in tl.pools.items():
            ax.plot(tl.time_s, series[key], lw=1.0, label=pool)
        ax.set_xlim(0.0, tl.time_s[-1] + tl.bin_s / 2)
        ax.set_ylim(0.0, max(1.0, ax.get_ylim()[1]))  # an empty queue reads as 0 of 1, not of 0.05
        ax.grid(alpha=0.3)
        ax.set_xlabel("simulated time (s)")
        if len(tl.pools) > 1:
            ax.legend(fontsize="small")
    axes[0].set_title(f"time-weighted mean per {_fmt_s(tl.bin_s)}" if tl.pools else "", fontsize="small", loc="left")
    if tl.pools:
        axes[0].set_ylim(0.0, 105.0)


def _cdf_panel(ax, values: np.ndarray, title: str, slo: float | None) -> None:
    ax.set_title(title)
    values = values[~np.isnan(values)]
    if values.size == 0:
        _empty(ax, "no completed requests")
        return
    x, y = cdf_points(values)
    ax.plot(x, y, lw=1.5, color="C0")
    p50, p99 = np.percentile(values, (50, 99))
    for p, q, style in ((p50, 0.5, ":"), (p99, 0.99, "--")):
        ax.axvline(p, color="0.35", ls=style, lw=1, label=f"p{round(q * 100)} {_fmt_s(p)}")
        ax.plot([p], [q], "o", color="0.35", ms=4)
    if slo is not None:
        ax.axvline(slo, color="C3", lw=1.5, label=f"SLO {_fmt_s(slo)}")
    ax.set_xscale(_log_if_wide(values))
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("seconds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="lower right")


def draw_latency_cdfs(axes, data: ServingPlotData) -> None:
    """Empirical CDFs of TTFT, TPOT (time per output token after the first) and end-to-end latency of the
    completed requests, with p50/p99 markers and the SLO lines when given."""
    done = data.finished
    t = data.table
    _cdf_panel(axes[0], t["ttft_s"][done], "TTFT (queueing included)", data.slo_ttft_s)
    _cdf_panel(axes[1], t["tpot_s"][done], "TPOT (per output token after the first)", data.slo_tpot_s)
    _cdf_panel(axes[2], t["e2e_s"][done], "end-to-end latency", None)
    axes[0].set_ylabel("fraction of completed requests")


def draw_request_scatter(axes, data: ServingPlotData, fig) -> None:
    """TTFT and end-to-end latency of each completed request against its arrival time, coloured by its input
    length (at most ``SCATTER_POINTS`` requests, a seeded uniform subset)."""
    done = np.flatnonzero(data.finished)
    t = data.table
    if done.size == 0:
        for ax in axes:
            _empty(ax, "no completed requests")
        return
    pick = done[subset(done.size, SCATTER_POINTS)]
    arrival, colour = t["arrival_s"][pick], t["input_tokens"][pick]
    shown = "" if pick.size == done.size else f" ({pick.size:,} of {done.size:,} shown)"
    norm = "log" if colour.min() > 0 and colour.max() > 20 * colour.min() else "linear"
    points = None
    for ax, key, label in zip(axes, ("ttft_s", "e2e_s"), ("TTFT (s)", "end-to-end latency (s)"), strict=True):
        y = t[key][pick]
        points = ax.scatter(
            arrival, y, c=colour, s=4, alpha=0.6, cmap="viridis", norm=norm, rasterized=True, linewidths=0
        )
        ax.set_yscale(_log_if_wide(y))
        ax.set_xlabel("arrival time (s)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_title("latency per request" + shown, fontsize="small", loc="left")
    fig.colorbar(points, ax=list(axes), label="input tokens", fraction=0.03, pad=0.01)


def timeline_figure(data: ServingPlotData) -> Figure:
    fig = Figure(figsize=(10, 7.5))
    axes = fig.subplots(3, 1, sharex=True, gridspec_kw=dict(left=0.08, right=0.97, top=0.95, bottom=0.07, hspace=0.12))
    draw_timeline(axes, data)
    for ax in axes[:-1]:
        ax.set_xlabel("")
    return fig


def latency_cdf_figure(data: ServingPlotData) -> Figure:
    fig = Figure(figsize=(14, 4.2))
    draw_latency_cdfs(fig.subplots(1, 3, gridspec_kw=_ROW), data)
    return fig


def request_scatter_figure(data: ServingPlotData) -> Figure:
    fig = Figure(figsize=(14, 4.5))
    draw_request_scatter(fig.subplots(1, 2, sharex=True, gridspec_kw=_ROW), data, fig)
    return fig


def composite_figure(data: ServingPlotData, title: str = "") -> Figure:
    """All three views in one figure (``fathom serve --plot FILE.png``). Fixed margins rather than a layout
    engine: constrained layout measures every tick label and doubles the drawing time."""
    fig = Figure(figsize=(15, 13))
    if title:
        fig.suptitle(title)
    grid = fig.add_gridspec(3, 6, left=0.055, right=0.98, top=0.94, bottom=0.05, hspace=0.32, wspace=0.75)
    timeline = [fig.add_subplot(grid[0, 2 * i : 2 * i + 2]) for i in range(3)]
    for ax in timeline[1:]:
        ax.sharex(timeline[0])
    draw_timeline(timeline, data)
    draw_latency_cdfs([fig.add_subplot(grid[1, 2 * i : 2 * i + 2]) for i in range(3)], data)
    scatter = [fig.add_subplot(grid[2, :3])]
    scatter.append(fig.add_subplot(grid[2, 3:], sharex=scatter[0]))
    draw_request_scatter(scatter, data, fig)
    return fig


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    """The figure as PNG bytes (for a file or a self-contained HTML page)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
