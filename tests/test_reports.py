"""Serving figures and self-contained HTML reports: `fathom serve --plot/--report`, the writer, the binning."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fathom.cli.app import run
from fathom.reports.html import Image, Section, Table, format_cell, render_html
from fathom.reports.series import binned_mean, cdf_points, subset
from fathom.reports.serving_figures import (
    ServingPlotData,
    composite_figure,
    figure_png,
    latency_cdf_figure,
    request_scatter_figure,
    timeline_figure,
)
from fathom.serving.cost import LinearCostModel
from fathom.serving.request import Request
from fathom.serving.simulator import Disaggregation, ReplicaConfig, simulate

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BASE = ["serve", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--input-len", "256", "--output-len", "32",
        "--rate", "4", "--num-requests", "40"]  # fmt: skip
# a reference that would make the page fetch something when opened
REMOTE = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)


def _requests(n: int, input_tokens: int = 64, output_tokens: int = 8) -> list[Request]:
    return [Request(i, 0.02 * i, input_tokens + 7 * (i % 5), output_tokens) for i in range(n)]


def _all_figures(data: ServingPlotData) -> None:
    """Every figure builds; the composite, which runs every drawing function, also renders."""
    for make in (timeline_figure, latency_cdf_figure, request_scatter_figure):
        assert make(data).axes
    assert figure_png(composite_figure(data, "t"), dpi=40).startswith(PNG_SIGNATURE)


# -- the command line ----------------------------------------------------------------------------------------------
def test_plot_png_is_a_png(tmp_path, capsys):
    out = tmp_path / "timeline.png"
    assert run(BASE + ["--plot", str(out)]) == 0
    assert out.read_bytes().startswith(PNG_SIGNATURE)


def test_html_plot_and_report_are_self_contained_and_hold_the_metrics(tmp_path, capsys):
    plot, report = tmp_path / "plot.html", tmp_path / "report.html"
    assert run(BASE + ["--slo-ttft", "0.5", "--json", "--plot", str(plot), "--report", str(report)]) == 0
    data = json.loads(capsys.readouterr().out)
    for page in (plot.read_text(encoding="utf-8"), report.read_text(encoding="utf-8")):
        assert not REMOTE.search(page)
        assert "<script" not in page.lower() and "<link" not in page.lower()
        assert page.count("data:image/png;base64,") == 3
        for value in (data["ttft_s"]["p50"], data["e2e_s"]["p99"], data["throughput"]["output_tokens_per_s"]):
            assert f">{format_cell(value)}<" in page
        assert "goodput_requests_per_s" in page and "tpot_s" in page
    text = report.read_text(encoding="utf-8")
    assert "Inputs" in text and "llama-3.1-8b" in text and "h100-sxm" in text and "Replicas" in text


@pytest.mark.parametrize(
    "option, name, fragment",
    [("--plot", "plot.svg", ".png or .html"), ("--plot", "plot", ".png or .html"), ("--report", "r.png", ".html")],
)
def test_bad_suffix_is_refused_before_simulating(tmp_path, capsys, monkeypatch, option, name, fragment):
    import fathom.api.serving

    def never(**kwargs):
        raise AssertionError("simulated despite a bad output path")

    monkeypatch.setattr(fathom.api.serving, "simulate_serving", never)
    assert run(BASE + [option, str(tmp_path / name)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and option in err and fragment in err and len(err.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_missing_directory_is_refused(tmp_path, capsys):
    assert run(BASE + ["--plot", str(tmp_path / "nowhere" / "p.png")]) == 2
    assert "no such directory" in capsys.readouterr().err


# -- figures of unusual runs ---------------------------------------------------------------------------------------
def test_figures_of_a_tiny_static_run():
    res = simulate(_requests(12), [ReplicaConfig(LinearCostModel(), scheduler="static", max_batch=4)])
    data = ServingPlotData.from_result(res, slo_ttft_s=0.1, slo_tpot_s=0.01)
    assert data.finished.all()
    (pool,) = data.timeline.pools.values()
    assert pool["running"].max() <= 4 + 1e-9 and 0 < pool["kv_percent"].max() <= 100 + 1e-9
    _all_figures(data)


def test_figures_with_no_completed_request():
    too_long = LinearCostModel(max_context=32)  # every request is rejected on arrival
    data = ServingPlotData.from_result(simulate(_requests(5), [ReplicaConfig(too_long)]))
    assert not data.finished.any() and not data.timeline.pools
    _all_figures(data)
    truncated = simulate(_requests(3, output_tokens=500), [ReplicaConfig(LinearCostModel())], max_sim_time_s=0.05)
    _all_figures(ServingPlotData.from_result(truncated))


def test_disaggregated_timeline_has_one_line_per_pool():
    split = Disaggregation([ReplicaConfig(LinearCostModel())], [ReplicaConfig(LinearCostModel())] * 2, 1e9)
    data = ServingPlotData.from_result(simulate(_requests(20), [], disaggregation=split))
    assert set(data.timeline.pools) == {"prefill pool", "decode pool"}
    _all_figures(data)


def test_timeline_returns_to_idle_between_bursts():
    """A replica's last sample before idling is the idle state, not the last iteration's batch."""
    reqs = [Request(0, 0.0, 64, 4), Request(1, 10.0, 64, 4)]
    data = ServingPlotData.from_result(simulate(reqs, [ReplicaConfig(LinearCostModel())]))
    (pool,) = data.timeline.pools.values()
    middle = (data.timeline.time_s > 2.0) & (data.timeline.time_s < 9.0)
    assert middle.any() and not pool["running"][middle].any() and not pool["kv_percent"][middle].any()


# -- the HTML writer -----------------------------------------------------------------------------------------------
def test_html_escapes_every_text():
    evil = '<script>alert("x")</script>'
    page = render_html(evil, [Section(evil, (evil,), [Table((evil,), [(evil, 1.5)], evil)],
                                      [Image(PNG_SIGNATURE, evil, evil)])])  # fmt: skip
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_cells_are_formatted_for_people():
    assert format_cell(None) == format_cell(float("nan")) == "\u2013"
    assert format_cell(123456.7) == "123,457" and format_cell(0.0123456) == "0.01235" and format_cell(3) == "3"
    assert format_cell(True) == "yes" and format_cell({"a": 1}) == "a: 1"


# -- shrinking long series -----------------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0, 100), st.integers(0, 50)), min_size=1, max_size=40),
    st.integers(1, 30),
    st.floats(1, 200),
)
def test_binned_mean_keeps_the_integral(samples, bins, end):
    samples.sort(key=lambda s: s[0])
    t = np.array([s[0] for s in samples])
    v = np.array([s[1] for s in samples], dtype=float)
    end = max(end, t[-1])
    edges = np.linspace(0.0, end, bins + 1)
    means = binned_mean(t, v, edges)
    dt = np.diff(np.append(t, end))
    assert np.sum(means * np.diff(edges)) == pytest.approx(np.sum(v * dt), rel=1e-9, abs=1e-6)
    assert means.min() >= -1e-9 and means.max() <= v.max() + 1e-9


def test_cdf_points_are_capped_and_monotone():
    values = np.random.default_rng(0).lognormal(size=100_000)
    x, y = cdf_points(np.append(values, np.nan), max_points=500)
    assert x.size == y.size == 500 and np.all(np.diff(x) >= 0) and y[0] == 0.0 and y[-1] == 1.0
    assert x[-1] == values.max()
    few_x, few_y = cdf_points(np.array([3.0, 1.0, 2.0]))
    assert list(few_x) == [1.0, 2.0, 3.0] and list(few_y) == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert np.array_equal(subset(10, 20), np.arange(10)) and np.array_equal(subset(1000, 10), subset(1000, 10))
