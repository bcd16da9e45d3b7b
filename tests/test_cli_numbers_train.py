"""`fathom train` with absurd numbers: bounded integer plan fields, finite float options, learned positions.

Every bad value is one line on stderr naming the flag and its range, exit code 2, no traceback, and nothing on
stdout (so ``--json`` never prints invalid JSON).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from fathom.api import estimate_training_plan
from fathom.cli.app import run
from fathom.errors import FathomInputError
from fathom.specs.plan import (
    MAX_BATCH,
    MAX_GPUS,
    MAX_SEQ_LEN,
    MAX_TOKENS_PER_STEP,
    TrainingPlan,
    check_plan_limits,
    plan_limits_error,
)
from fathom.training.plans import PlanArrays

TRAIN = ["train", "--model", "llama-3.1-8b", "--gpu", "h100-sxm"]
HUGE = "100000000000000000000000000"  # 1e26: past int64


def _fails(capsys, argv: list[str], *needles: str) -> str:
    assert run(argv) == 2
    captured = capsys.readouterr()
    line = captured.err.strip()
    assert captured.out == ""
    assert "\n" not in line and "Traceback" not in line and line.startswith("error: ")
    for needle in needles:
        assert needle in line, line
    return line


# ---- 1. integer plan fields -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "needles"),
    [
        (["--num-gpus", HUGE, "--seq-len", "4096", "--global-batch", "64"], ("--num-gpus", f"1..{MAX_GPUS}")),
        (["--num-gpus", "8", "--seq-len", "99999999999999999999", "--global-batch", "64"], ("--seq-len", "1..")),
        (["--num-gpus", "8", "--seq-len", "4096", "--global-batch", HUGE], ("--global-batch", f"1..{MAX_BATCH}")),
        (["--num-gpus", "8", "--seq-len", "4096", "--global-batch", "64", "--micro-batch", HUGE], ("--micro-batch",)),
        (["--num-gpus", "8", "--seq-len", "4096", "--global-batch", "64", "--tp", HUGE], ("--tp", f"1..{MAX_GPUS}")),
        (["--num-gpus", "8", "--seq-len", "4096", "--global-batch", "64", "--dp", HUGE], ("--dp",)),
        (["--num-gpus", "8", "--seq-len", "4096", "--global-batch", "64", "--vpp", HUGE], ("--vpp",)),
        (["--num-gpus", "8", "--seq-len", "4096", "--global-batch", "64", "--lora-rank", HUGE], ("--lora-rank",)),
        (["--num-gpus", "8", "--seq-len", "4096", "--global-batch", "64", "--frozen-layers", "-" + HUGE],
         ("--frozen-layers",)),
        # each in range, the product past what a step may hold
        (["--num-gpus", "8", "--seq-len", str(MAX_SEQ_LEN), "--global-batch", "4096"],
         ("tokens per step", str(MAX_TOKENS_PER_STEP))),
    ],
)  # fmt: skip
def test_integer_fields_out_of_range_are_one_line_errors(capsys, flags, needles):
    _fails(capsys, TRAIN + flags + ["--json"], *needles)


def test_training_plan_and_plan_arrays_bound_the_same_fields():
    with pytest.raises(ValueError, match="--seq-len .* must be 1..1073741824"):
        TrainingPlan(seq_len=10**20, global_batch=64)
    with pytest.raises(ValueError, match="GPUs: must be at most"):
        TrainingPlan(seq_len=4096, global_batch=64, tp=2**20, pp=2**20)
    # the vectorised path (searches, check_plan) raises FathomInputError before any int64 conversion overflows
    with pytest.raises(FathomInputError, match="--seq-len 100000000000000000000 is out of range"):
        PlanArrays.from_columns(seq_len=[4096, 10**20], global_batch=64)
    with pytest.raises(FathomInputError, match="tp\\*pp\\*dp\\*cp"):
        PlanArrays.from_columns(seq_len=4096, global_batch=64, tp=np.array([1, 2**24]), dp=np.array([1, 2**24]))
    plans = PlanArrays.from_columns(seq_len=[4096, MAX_SEQ_LEN], global_batch=[64, 1], tp=[1, MAX_GPUS])
    assert plans.seq_len.dtype == np.int64 and len(plans) == 2
    assert plan_limits_error({"seq_len": 4096, "global_batch": 64, "tp": 8, "dp": 8}) is None
    with pytest.raises(FathomInputError, match="--num-gpus"):
        check_plan_limits(num_gpus=2**30, seq_len=4096)


def test_api_names_the_flag():
    base = dict(model="llama-3.1-8b", gpu="h100-sxm", global_batch=64)
    with pytest.raises(FathomInputError, match="--num-gpus"):
        estimate_training_plan(num_gpus=10**26, seq_len=4096, **base)
    with pytest.raises(FathomInputError, match="--seq-len"):
        estimate_training_plan(num_gpus=8, seq_len=10**20, **base)
    with pytest.raises(FathomInputError, match="--seq-len: Input should be greater than 0"):
        estimate_training_plan(num_gpus=8, seq_len=0, **base)


# ---- 2. float options -------------------------------------------------------------------------------------------

PLAN = TRAIN + ["--num-gpus", "8", "--seq-len", "4096", "--global-batch", "64", "--json"]


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--tokens", "1e400"),
        ("--tokens", "1e19"),
        ("--price-per-gpu-hour", "1e400"),
        ("--power-cap", "1e400"),
        ("--pue", "1e400"),
        ("--pue", "11"),
        ("--mtbf-hours", "1e400"),
        ("--storage-bw", "1e400"),
        ("--restart-min", "1e300"),
        ("--checkpoint-interval", "1e400"),
        ("--intra-node-bw", "1e400"),
        ("--inter-node-bw", "inf"),
    ],
)
def test_float_options_must_be_finite_and_in_range(capsys, flag, value):
    line = _fails(capsys, PLAN + [flag, value], flag)
    assert "Infinity" not in line


def test_large_finite_tokens_give_valid_json(capsys):
    assert run(PLAN + ["--tokens", "1e18", "--price-per-gpu-hour", "1e6", "--pue", "10"]) == 0
    out = capsys.readouterr().out

    def no_constants(name):
        raise AssertionError(f"bare {name} in --json output")

    data = json.loads(out, parse_constant=no_constants)
    assert data["run"]["tokens"] == 1e18


def test_api_rejects_non_finite_floats():
    base = dict(model="llama-3.1-8b", gpu="h100-sxm", num_gpus=8, seq_len=4096, global_batch=64)
    for key, flag in (("tokens", "--tokens"), ("pue", "--pue"), ("restart_min", "--restart-min")):
        with pytest.raises(FathomInputError, match=f"^{flag} (inf|nan) is out of range: must be a finite number"):
            estimate_training_plan(**base, **{key: float("inf") if key != "pue" else float("nan")})
    with pytest.raises(FathomInputError, match="--intra-node-bw"):
        estimate_training_plan(**base, system_overrides={"intra_node_bw_GBps": float("inf")})


# ---- 5. learned position embeddings ------------------------------------------------------------------------------


@pytest.fixture
def gpt2_config(tmp_path):
    path = tmp_path / "gpt2" / "config.json"
    path.parent.mkdir()
    config = {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_embd": 768, "n_head": 12,
              "n_layer": 12, "vocab_size": 50257, "n_positions": 1024}  # fmt: skip
    path.write_text(json.dumps(config))
    return str(path)


def test_learned_positions_bound_the_sequence(capsys, gpt2_config):
    argv = ["train", "--model", gpt2_config, "--gpu", "h100-sxm", "--num-gpus", "8", "--global-batch", "64"]
    _fails(capsys, argv + ["--seq-len", "4096"], "--seq-len 4096", "1024 learned position", "1..1024")
    _fails(capsys, argv + ["--seq-len", "1025", "--dp", "8"], "--seq-len 1025")
    assert run(argv + ["--seq-len", "1024", "--json"]) == 0
    json.loads(capsys.readouterr().out)


def test_rope_models_may_train_past_their_context(capsys):
    # llama-3.1-8b: RoPE, 131072 positions; context extension past them stays allowed
    argv = TRAIN + ["--num-gpus", "8", "--seq-len", "262144", "--global-batch", "8", "--cp", "8", "--json"]
    assert run(argv) == 0
    json.loads(capsys.readouterr().out)
