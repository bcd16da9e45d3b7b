"""`fathom serve`: the JSON contract, determinism, and one-line errors for bad workloads and traces."""

from __future__ import annotations

import json

import pytest

from fathom.cli.app import run

BASE = ["serve", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--input-len", "512", "--output-len", "64"]
KEYS = ("ttft_s", "tpot_s", "e2e_s", "throughput", "goodput_requests_per_s", "completed", "rejected",
        "max_concurrency", "kv_cache_gib", "preemptions", "cost_per_million_tokens")  # fmt: skip


def _json(capsys, argv):
    assert run(argv + ["--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_contract_and_conservation(capsys):
    data = _json(capsys, BASE + ["--rate", "4", "--num-requests", "60", "--slo-ttft", "1", "--slo-tpot", "0.1"])
    for key in KEYS:
        assert key in data
    assert set(data["ttft_s"]) >= {"p50", "p90", "p99", "mean"}
    assert set(data["throughput"]) == {"requests_per_s", "output_tokens_per_s", "total_tokens_per_s"}
    assert data["completed"] + data["rejected"] == 60
    assert data["goodput_requests_per_s"] <= data["throughput"]["requests_per_s"] + 1e-12


def test_same_seed_same_result(capsys):
    argv = BASE + ["--rate", "6", "--num-requests", "80", "--seed", "7"]
    assert _json(capsys, argv) == _json(capsys, argv)
    assert _json(capsys, argv) != _json(capsys, BASE + ["--rate", "6", "--num-requests", "80", "--seed", "8"])


def test_overlong_requests_are_rejected_with_a_reason(capsys):
    data = _json(capsys, ["serve", "--model", "gpt3-125m", "--gpu", "h100-sxm", "--offline", "--num-requests", "5",
                          "--input-len", "4000", "--output-len", "10"])  # fmt: skip
    assert data["rejected"] == 5 and data["completed"] == 0
    assert data["rejected_reasons"]


def test_closed_loop_and_disaggregation_run(capsys):
    closed = _json(capsys, BASE + ["--concurrency", "8", "--num-requests", "40"])
    assert closed["completed"] == 40 and closed["max_concurrency"] <= 8
    split = _json(capsys, BASE + ["--rate", "4", "--num-requests", "30", "--disaggregate", "1:1"])
    assert split["completed"] == 30


def test_writes_per_request_csv(tmp_path, capsys):
    out = tmp_path / "requests.csv"
    assert run(BASE + ["--rate", "4", "--num-requests", "20", "--out", str(out)]) == 0
    lines = out.read_text().strip().splitlines()
    assert len(lines) == 21 and "ttft_s" in lines[0]


@pytest.mark.parametrize(
    "trace_text, fragment",
    [
        ('{"arrival_s": 0, "input_tokens": 10, "output_tokens": 5}\n{"arrival_s": 1, "input_tokens": 10}\n', "line 2"),
        (
            '{"arrival_s": 1, "input_tokens": 10, "output_tokens": 5}\n{"arrival_s": 0.5, "input_tokens": 3, '
            '"output_tokens": 5}\n',
            "line 2",
        ),
        ('{"arrival_s": 0, "input_tokens": -3, "output_tokens": 5}\n', "line 1"),
        ('{"arrival_s": "soon", "input_tokens": 3, "output_tokens": 5}\n', "line 1"),
    ],
)
def test_bad_traces_name_the_line(tmp_path, capsys, trace_text, fragment):
    trace = tmp_path / "trace.jsonl"
    trace.write_text(trace_text)
    code = run(["serve", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--trace", str(trace)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and fragment in err


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--rate", "1", "--offline", "--num-requests", "3"], "exactly one"),
        (["--rate", "1", "--num-requests", "3", "--scheduler", "fifo"], "scheduler"),
        (["--rate", "1", "--num-requests", "3", "--precision", "fp4"], "--precision"),
        (["--rate", "1", "--num-requests", "3", "--output-len", "0"], "output-len"),
        (["--offline", "--num-requests", "3", "--disaggregate", "two"], "disaggregate"),
    ],
)
def test_bad_options_one_line(capsys, extra, fragment):
    code = run(BASE + extra)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and fragment in err, err


def test_bad_length_spec(capsys):
    argv = ["serve", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--rate", "1", "--num-requests", "3"]
    code = run(argv + ["--input-dist", "lognormal:mu=3"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "input length" in err, err


def test_model_that_does_not_fit(capsys):
    code = run(["serve", "--model", "llama-3.1-405b", "--gpu", "l4", "--offline", "--num-requests", "2"])
    assert code == 2 and "does not fit" in capsys.readouterr().err


def test_no_sliding_window_attends_over_the_whole_context(capsys):
    args = ["serve", "--model", "mistral-7b", "--gpu", "h100-sxm", "--offline", "--num-requests", "20",
            "--input-len", "8000", "--output-len", "100", "--json"]  # fmt: skip
    speeds = []
    for extra in ([], ["--no-sliding-window"]):
        assert run(args + extra) == 0
        speeds.append(json.loads(capsys.readouterr().out)["throughput"]["output_tokens_per_s"])
    assert speeds[1] < speeds[0]  # past the 4,096-token window, full attention reads more KV per token
