"""``fathom check``'s inputs are refused before any PyTorch worker starts: a device that is not a profile of this
machine, a corrupt profile, a run predicted not to fit, an unsupported model, more ranks than cores. A worker that
does fail is reported in one line without an exception's class name."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from fathom.catalog.hardware import get_device
from fathom.cli.app import run
from fathom.errors import FathomInputError
from fathom.profiling.machine import cpu_model

pytest.importorskip("torch")


@pytest.fixture
def no_workers(monkeypatch):
    """A worker starting fails the test: each refusal below must come first."""
    import fathom.profiling.check as check

    def started(*args, **kwargs):
        raise AssertionError("a PyTorch worker started before the inputs were checked")

    monkeypatch.setattr(check, "run_workers", started)


def _fake_profile(tmp_path: Path, memory_gib: float = 8.0, **machine) -> Path:
    """A device YAML shaped as `fathom profile` writes it (no benchmarks run): the catalog cpu, this machine."""
    device = get_device("cpu").model_dump(exclude_none=True)
    device.update(name="node", memory_gib=memory_gib)
    mach = {"cpu_model": cpu_model(), "cores": os.cpu_count(), "threads": 1, "accelerator": "cpu", **machine}
    path = tmp_path / "node.yaml"
    path.write_text(yaml.safe_dump({**device, "profile": {"machine": mach, "clock": "wall"}}), encoding="utf-8")
    return path


def _check(capsys, *argv: str) -> str:
    assert run(["check", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


@pytest.mark.parametrize("job", ["train", "serve"])
def test_a_corrupt_profile_reads_as_the_catalog_reports_it(job, tmp_path, no_workers, capsys) -> None:
    path = _fake_profile(tmp_path)
    path.write_text(path.read_text()[:300] + "\n  bad: [\n", encoding="utf-8")  # truncated mid-file
    with pytest.raises(FathomInputError) as catalog:
        get_device(str(path))
    assert "invalid YAML at line" in str(catalog.value)
    assert str(catalog.value) in _check(capsys, job, "--model", "tiny-llama", "--gpu", str(path))


@pytest.mark.parametrize("gpu", ["h100-sxm", "cpu"])
def test_a_catalog_device_is_not_this_machine(gpu, no_workers, capsys) -> None:
    err = _check(capsys, "train", "--model", "tiny-llama", "--gpu", gpu)
    assert f"--gpu: {gpu} is not a profile of this machine" in err and "fathom profile" in err


def test_another_machines_profile_is_refused(tmp_path, no_workers, capsys) -> None:
    path = _fake_profile(tmp_path, cpu_model="Some Other CPU @ 1.00GHz")
    err = _check(capsys, "serve", "--model", "tiny-llama", "--gpu", str(path))
    assert "was measured on 'Some Other CPU @ 1.00GHz'" in err and "fathom profile" in err


def test_a_gpu_profile_needs_that_gpu_here(tmp_path, no_workers, capsys, monkeypatch) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # whatever this host has
    path = _fake_profile(tmp_path, accelerator="NVIDIA H100 80GB HBM3")
    assert "a GPU profile needs that GPU" in _check(capsys, "train", "--model", "tiny-llama", "--gpu", str(path))


@pytest.mark.parametrize("job", ["train", "serve"])
def test_a_run_predicted_not_to_fit_is_refused(job, tmp_path, no_workers, capsys) -> None:
    path = _fake_profile(tmp_path, memory_gib=0.01)
    err = _check(capsys, job, "--model", "tiny-llama", "--gpu", str(path))
    assert "GiB (predicted peak)" in err and "has 0.01 GiB" in err
    big = _fake_profile(tmp_path, memory_gib=64.0)
    err = _check(capsys, job, "--model", "llama-2-70b", "--gpu", str(big))
    assert "needs 1" in err and "has 64.0 GiB" in err


@pytest.mark.parametrize("job", ["train", "serve"])
def test_an_unsupported_model_is_refused_before_the_worker(job, tmp_path, no_workers, capsys) -> None:
    err = _check(capsys, job, "--model", "mixtral-8x7b", "--gpu", str(_fake_profile(tmp_path)))
    assert "--model: check builds dense decoders only" in err and "Error" not in err


def test_ranks_times_profile_threads_over_the_cores_says_what_would_fit(tmp_path, no_workers, capsys) -> None:
    cores = os.cpu_count() or 1
    if cores < 2:
        pytest.skip("needs two cores")
    path = _fake_profile(tmp_path, threads=cores)
    err = _check(capsys, "train", "--model", "tiny-llama", "--gpu", str(path), "--dp", "2")
    assert f"need {2 * cores} cores, this machine has {cores}" in err
    assert f"use --dp 1 or re-profile with --threads {cores // 2} for 2 ranks" in err


def test_a_failing_worker_is_one_line_without_class_names() -> None:
    from fathom.catalog.models import get_model
    from fathom.profiling.check import run_workers

    args = {"job": "serve", "spec": get_model("mixtral-8x7b").model_dump(), "batch": 1, "input_len": 4}
    args.update(output_len=2, repeats=1, warmup=0, threads=1, clock="wall", dtype="bf16")
    with pytest.raises(FathomInputError) as err:
        run_workers(args, 1, 120.0)
    assert str(err.value) == (
        "check: the PyTorch run failed: --model: check builds dense decoders only; mixtral-8x7b uses MoE or MLA"
    )


def test_failure_lines_drop_class_names_and_explain_signals() -> None:
    from fathom.profiling.check import WORKER_FAILED, _failure_line

    assert _failure_line(f"Traceback ...\n{WORKER_FAILED}out of memory\n", 1) == "out of memory"
    assert _failure_line("Traceback ...\ntorch.OutOfMemoryError: could not allocate\n", 1) == "could not allocate"
    assert "signal 9" in _failure_line("", -9) and "out-of-memory killer" in _failure_line("", -9)
    assert _failure_line("", 3) == "the worker process exited with status 3 without output"


def test_a_profile_with_more_threads_than_cores_names_the_profile_not_dp():
    from fathom.profiling.check import _oversubscribed

    message = _oversubscribed(1, 64, 2)
    assert message.startswith("--gpu: the profile runs 64 threads per rank") and "--dp" not in message
    assert _oversubscribed(2, 2, 2).startswith("--dp: 2 ranks x 2 threads")


def test_a_profile_section_that_is_not_a_mapping_is_refused_by_every_command(tmp_path):
    import yaml

    from fathom.catalog.hardware import get_device
    from fathom.errors import FathomInputError

    doc = {**get_device("h100-sxm").model_dump(), "profile": [1, 2]}
    path = tmp_path / "junk.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(FathomInputError, match="field profile: expected the mapping fathom profile writes"):
        get_device(str(path))
