"""The CLI contract: flags and JSON keys scripts depend on, and one-line errors with exit code 2."""

from __future__ import annotations

import json

import pytest

from fathom.api import estimate_training_plan
from fathom.cli.app import run

DEMO = [
    "train",
    "--model",
    "llama-3.1-70b",
    "--gpu",
    "h100-sxm",
    "--num-gpus",
    "1024",
    "--tp",
    "8",
    "--pp",
    "4",
    "--seq-len",
    "8192",
    "--global-batch",
    "1024",
    "--micro-batch",
    "1",
    "--recompute",
    "selective",
]


def _json(capsys, argv):
    assert run(argv + ["--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_train_json_has_contract_keys(capsys):
    data = _json(capsys, DEMO)
    for key in (
        "step_time_s",
        "tokens_per_s",
        "tflops_per_gpu",
        "mfu",
        "hfu",
        "fits",
        "memory",
        "time_breakdown",
    ):
        assert key in data
    assert {"peak_gib", "breakdown"} <= set(data["memory"])
    assert data["plan"]["dp"] == 32  # inferred: 1024 / (8 * 4)
    assert 0 < data["mfu"] < 1 and data["hfu"] >= data["mfu"]
    assert data["step_time_s"] == pytest.approx(sum(data["time_breakdown"].values()), rel=1e-9)
    assert data["memory"]["peak_gib"] == pytest.approx(sum(data["memory"]["breakdown"].values()), rel=1e-9)


def test_cli_equals_python_api(capsys):
    data = _json(capsys, DEMO)
    api = estimate_training_plan(
        model="llama-3.1-70b",
        gpu="h100-sxm",
        num_gpus=1024,
        seq_len=8192,
        global_batch=1024,
        micro_batch=1,
        tp=8,
        pp=4,
        recompute="selective",
    )
    assert data == json.loads(api.model_dump_json())


def test_human_output_runs(capsys):
    assert run(DEMO + ["--tokens", "1e12"]) == 0
    out = capsys.readouterr().out
    assert "step time" in out and "GPU-hours" in out


def test_tokens_gives_run_cost(capsys):
    data = _json(capsys, DEMO + ["--tokens", "15e12", "--price-per-gpu-hour", "2"])
    run_report = data["run"]
    assert run_report["gpu_hours"] == pytest.approx(run_report["time_s"] * 1024 / 3600)
    assert run_report["cost_usd"] == pytest.approx(2 * run_report["gpu_hours"])


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--model", "llama-3.1-7b"], "llama-3.1-8b"),  # close match suggested
        (["--gpu", "h100"], "h100-sxm"),
        (["--tp", "3"], "tp=3"),  # does not divide 64 heads
        (["--tp", "8", "--pp", "4", "--dp", "4"], "--num-gpus"),  # 8*4*4 != 1024
        (["--pp", "100"], "deeper"),  # more stages than layers... (pp 100 with 80 layers)
        (["--seq-len", "0"], "seq-len"),
        (["--global-batch", "-4"], "global-batch"),
        (["--recompute", "sometimes"], "selective"),
        (["--global-batch", "1000"], "multiple"),
        (["--tp", "8", "--pp", "1", "--vpp", "2"], "needs --pp 2"),  # nothing to interleave on one stage
        (["--zero", "1", "--offload", "nvme"], "needs --zero 3"),  # DeepSpeed: NVMe offload is ZeRO-3 only
        (["--gpu", "a100-80gb", "--precision", "fp8"], "no FP8 tensor cores"),  # A100 has no FP8 rate
    ],
)
def test_bad_input_one_line_exit_2(capsys, argv, fragment):
    args = list(DEMO)
    for i in range(0, len(argv), 2):
        flag, value = argv[i], argv[i + 1]
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    if "--pp" in argv and argv[argv.index("--pp") + 1] == "100":
        args[args.index("--num-gpus") + 1] = str(8 * 100 * 1)
        args[args.index("--global-batch") + 1] = "100"
    code = run(args)
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert fragment in err


def test_bad_choice_suggests_the_closest_spelling(capsys):
    assert run(DEMO + ["--optimizer", "adamw8bit"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean 'adam-8bit'" in err and "'galore'" in err  # valid list kept
    assert run(DEMO + ["--recompute", "xyz"]) == 2
    assert "did you mean" not in capsys.readouterr().err  # nothing close: the list alone


def test_malformed_config_json(tmp_path, capsys):
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    args = list(DEMO)
    args[args.index("--model") + 1] = str(bad)
    assert run(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "config.json" in err


def test_catalog_listings(capsys):
    for cmd in (["models", "--json"], ["gpus", "--json"], ["systems", "--json"]):
        assert run(cmd) == 0
        assert len(json.loads(capsys.readouterr().out)) >= 10
