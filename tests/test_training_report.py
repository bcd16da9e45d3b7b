"""``fathom train --report`` and ``fathom plan train --report``: one self-contained HTML page each."""

from __future__ import annotations

import json

from fathom.cli.app import run

TRAIN = [
    "--model",
    "llama-3.1-8b",
    "--gpu",
    "h100-sxm",
    "--num-gpus",
    "16",
    "--tp",
    "2",
    "--seq-len",
    "4096",
    "--global-batch",
    "64",
]


def test_train_report_is_self_contained(tmp_path, capsys):
    path = tmp_path / "plan.html"
    assert run(["train", *TRAIN, "--tokens", "1e11", "--report", str(path), "--json"]) == 0
    est = json.loads(capsys.readouterr().out)
    page = path.read_text()
    assert page.count("data:image/png;base64,") == 2  # memory bar and step-time waterfall
    assert "<script" not in page and "http://" not in page and "https://" not in page
    assert f"{est['step_time_s']:.4g}" in page and "--tokens" in page and "run.cost_usd" in page


def test_plan_report_ranks_and_plots(tmp_path, capsys):
    path = tmp_path / "search.html"
    args = [
        "plan",
        "train",
        "--model",
        "llama-3.1-8b",
        "--gpu",
        "h100-sxm",
        "--max-gpus",
        "32",
        "--seq-len",
        "4096",
        "--global-batch",
        "64",
        "--pareto",
        "--report",
        str(path),
        "--json",
    ]
    assert run(args) == 0
    result = json.loads(capsys.readouterr().out)
    page = path.read_text()
    assert "Pareto front" in page and page.count("data:image/png;base64,") == 3
    assert f"{result['plans'][0]['tokens_per_s']:,.0f}" in page


def test_bad_report_path_fails_before_any_work(tmp_path, capsys):
    assert run(["train", *TRAIN, "--report", str(tmp_path / "plan.pdf")]) == 2
    assert "--report" in capsys.readouterr().err
    assert (
        run(
            [
                "plan",
                "train",
                *TRAIN[:4],
                "--seq-len",
                "4096",
                "--global-batch",
                "64",
                "--num-gpus",
                "8",
                "--report",
                str(tmp_path / "missing" / "x.html"),
            ]
        )
        == 2
    )
    assert "no such directory" in capsys.readouterr().err


def test_train_report_holds_the_energy_and_fault_tolerance_tables(tmp_path, capsys):
    """The page shows what the terminal shows: phase-aware energy and carbon, and the fault-tolerance report."""
    path = tmp_path / "run.html"
    extra = ["--tokens", "1e11", "--region", "us-east", "--mtbf-hours", "50000", "--checkpoint", "async"]
    assert run(["train", *TRAIN, *extra, "--report", str(path), "--json"]) == 0
    est = json.loads(capsys.readouterr().out)
    page = path.read_text()
    assert "Energy and carbon" in page and "run.energy_server_mwh" in page and "run.co2e_t" in page
    assert "Fault tolerance" in page and "reliability.goodput" in page
    assert f"{est['reliability']['goodput']:.4g}" in page
