"""``fathom plan ... --export``: the winner as an engine's configuration on stdout, warnings on stderr."""

from __future__ import annotations

import json

from fathom.cli.app import run

TRAIN = ["plan", "train", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--num-gpus", "64",
         "--seq-len", "4096", "--global-batch", "512"]  # fmt: skip
SERVE = ["plan", "serve", "--model", "llama-3.1-8b", "--gpus", "h100-sxm", "--rate", "50", "--input-len", "512",
         "--output-len", "64", "--slo-ttft", "0.5", "--slo-tpot", "0.05", "--duration", "3", "--tp", "1", "--pp", "1",
         "--precision", "bf16", "--max-batch", "64", "--max-batch-tokens", "2048", "--no-disaggregate"]  # fmt: skip


def test_best_training_plan_exports_as_a_deepspeed_config(capsys):
    assert run([*TRAIN, "--json"]) == 0
    best = json.loads(capsys.readouterr().out)["plans"][0]
    assert run([*TRAIN, "--export", "deepspeed"]) == 0
    config = json.loads(capsys.readouterr().out)  # stdout holds the config alone
    assert config["train_batch_size"] == 512
    assert config["train_micro_batch_size_per_gpu"] == best["micro_batch"]
    assert config["zero_optimization"]["stage"] == best["zero"]


def test_best_training_plan_exports_as_a_megatron_launch(capsys):
    assert run([*TRAIN, "--export", "megatron"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("#!/usr/bin/env bash") and "--seq-length 4096" in out and "--global-batch-size 512" in out


def test_unknown_engine_fails_before_searching(capsys):
    assert run([*TRAIN, "--export", "vllm"]) == 2
    err = capsys.readouterr().err
    assert "--export" in err and "megatron" in err and "Traceback" not in err
    assert run([*SERVE, "--export", "megatron"]) == 2
    assert "vllm" in capsys.readouterr().err


def test_best_deployment_exports_as_a_vllm_command(capsys):
    assert run([*SERVE, "--export", "vllm"]) == 0
    out = capsys.readouterr().out
    assert "vllm serve" in out and "--max-num-seqs 64" in out and "--max-num-batched-tokens 2048" in out


def test_plot_writes_a_png_or_refuses_other_suffixes(tmp_path, capsys):
    png = tmp_path / "front.png"
    assert run([*TRAIN, "--pareto", "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = tmp_path / "front.svg"
    assert run([*TRAIN, "--plot", str(bad)]) == 2
    assert "--plot" in capsys.readouterr().err and not bad.exists()
