"""``fathom check`` on a GPU profile: where the worker runs (``worker_device``), the one-line refusals (no CUDA, another
GPU, fewer GPUs than ``--dp``), the device in the worker's arguments, and the memory comparison on CUDA (allocated
tensors against the prediction without its runtime reserve). This machine has no GPU: ``torch.cuda`` is
monkeypatched and the workers are replaced, so the worker's real CUDA path is not run here."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from fathom.catalog.hardware import get_device
from fathom.cli.app import run
from fathom.errors import FathomInputError
from fathom.profiling.machine import cpu_model
from fathom.specs.hardware import GIB

torch = pytest.importorskip("torch")

H100 = "NVIDIA H100 80GB HBM3"


class _Stop(Exception):
    pass


def _profile(tmp_path: Path, accelerator: str = H100, memory_gib: float | None = None, threads: int = 1) -> Path:
    """A device YAML shaped as `fathom profile --base h100-sxm` writes it on a GPU node (no benchmarks run); with
    ``accelerator="cpu"``, a profile of this machine's CPU."""
    base = "cpu" if accelerator == "cpu" else "h100-sxm"
    device = get_device(base).model_dump(exclude_none=True)
    device.update(name="node")
    if memory_gib is not None:
        device["memory_gib"] = memory_gib
    mach = {"cpu_model": cpu_model(), "cores": os.cpu_count(), "threads": threads, "accelerator": accelerator}
    path = tmp_path / f"node-{len(list(tmp_path.iterdir()))}.yaml"
    path.write_text(yaml.safe_dump({**device, "profile": {"machine": mach, "clock": "wall"}}), encoding="utf-8")
    return path


@pytest.fixture
def gpus(monkeypatch):
    """Fakes ``torch.cuda``: ``gpus(names)`` makes these the visible GPUs (empty: no CUDA)."""

    def install(names: list[str]) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: bool(names))
        monkeypatch.setattr(torch.cuda, "device_count", lambda: len(names))
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: names[i])

    return install


@pytest.fixture
def workers(monkeypatch):
    """Records each worker call's (args, world) and stops the check there."""
    import fathom.profiling.check as check

    calls: list[tuple[dict, int]] = []

    def started(args, world, *rest, **kwargs):
        calls.append((args, world))
        raise _Stop

    monkeypatch.setattr(check, "run_workers", started)
    return calls


def _refused(capsys, *argv: str) -> str:
    assert run(["check", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    return err


@pytest.mark.parametrize("job", ["train", "serve"])
def test_a_gpu_profile_without_cuda_is_refused_in_one_line(job, tmp_path, gpus, workers, capsys) -> None:
    gpus([])
    path = _profile(tmp_path)
    err = _refused(capsys, job, "--model", "tiny-llama", "--gpu", str(path))
    assert f"--gpu: {path} profiles {H100}: a GPU profile needs that GPU" in err
    assert "no CUDA device" in err and not workers


def test_a_gpu_profile_of_another_gpu_is_refused(tmp_path, gpus, workers, capsys) -> None:
    gpus(["NVIDIA A100-SXM4-80GB"])
    err = _refused(capsys, "train", "--model", "tiny-llama", "--gpu", str(_profile(tmp_path)))
    assert f"was measured on '{H100}', this machine's GPU is 'NVIDIA A100-SXM4-80GB'" in err
    assert "fathom profile --base" in err and not workers


def test_dp_needs_one_gpu_per_rank(tmp_path, gpus, workers, capsys) -> None:
    gpus([H100])
    err = _refused(capsys, "train", "--model", "tiny-llama", "--gpu", str(_profile(tmp_path)), "--dp", "2")
    assert "--dp: 2 ranks need 2 GPUs (one each), this machine has 1; use --dp 1" in err and not workers
    gpus([H100, H100, "NVIDIA A100-SXM4-80GB"])
    err = _refused(capsys, "train", "--model", "tiny-llama", "--gpu", str(_profile(tmp_path)), "--dp", "3")
    assert "rank 2 would run on GPU 2, a 'NVIDIA A100-SXM4-80GB', not the profile's" in err and "--dp 2" in err


def test_worker_device_picks_cuda_for_a_matching_gpu_and_cpu_for_a_cpu_profile(tmp_path, gpus) -> None:
    from fathom.profiling.check import worker_device

    gpus([H100, H100])
    assert worker_device(str(_profile(tmp_path))) == "cuda"
    assert worker_device(str(_profile(tmp_path)), dp=2) == "cuda"
    assert worker_device(str(_profile(tmp_path, accelerator="cpu")), dp=2) == "cpu"  # a CPU profile stays on the CPU
    gpus([])
    assert worker_device(str(_profile(tmp_path, accelerator="cpu"))) == "cpu"
    with pytest.raises(FathomInputError, match="needs that GPU"):
        worker_device(str(_profile(tmp_path)))


def test_the_worker_arguments_carry_the_device(tmp_path, gpus, workers) -> None:
    from fathom.profiling.check import check_serve, check_train

    gpus([H100, H100])
    cores = os.cpu_count() or 1
    # Every core per rank: a CPU check would refuse --dp 2 as oversubscribed, a GPU rank runs on its own GPU.
    gpu = str(_profile(tmp_path, threads=cores))
    with pytest.raises(_Stop):
        check_train("tiny-llama", gpu, 1, 32, dp=2)
    with pytest.raises(_Stop):
        check_serve("tiny-llama", gpu, 2, 16, 4)
    with pytest.raises(_Stop):
        check_train("tiny-llama", str(_profile(tmp_path, accelerator="cpu")), 1, 32)
    (train, world), (serve, _), (cpu, _) = workers
    assert train["device"] == "cuda" and world == 2 and serve["device"] == "cuda" and cpu["device"] == "cpu"


def _fake_results(job: str, measure: str, reserved: float | None):
    """A worker's JSON as the CUDA path returns it (one timed sample), for the comparison code."""

    def results(args, world, *rest, **kwargs):
        mem = {"peak_memory_bytes": 1e8, "peak_memory_measure": measure, "peak_memory_reserved_bytes": reserved}
        if job == "train":
            phases = {"forward": 0.01, "backward": 0.02, "optimizer": 0.005}
            samples = {k: [v] for k, v in phases.items()}
            return {"phases": phases, "samples": samples, "params": 1, "probe_s": None, **mem}
        steps = [0.001] * (args["output_len"] - 1)
        return {"prefill_s": 0.01, "prefill_samples": [0.01], "decode_step_s": steps, "decode_samples": [steps], **mem}

    return results


def test_cuda_memory_compares_allocated_tensors_without_the_runtime_reserve(tmp_path, gpus, monkeypatch) -> None:
    import fathom.profiling.check as check

    gpus([H100])
    gpu = str(_profile(tmp_path))
    monkeypatch.setattr(check, "run_workers", _fake_results("train", "allocated", 2e8))
    train = check.check_train("tiny-llama", gpu, 1, 32, steps=1)
    mem = train["memory"]
    parts = mem["predicted_breakdown_bytes"]
    assert parts["runtime_reserved"] > 0  # predicted, shown, but not compared
    assert mem["predicted_bytes"] == pytest.approx(sum(v for k, v in parts.items() if k != "runtime_reserved"))
    assert mem["measure"] == "allocated" and mem["measured_reserved_bytes"] == 2e8 and train["device"] == "cuda"
    assert "max_memory_allocated" in mem["method"] and "without runtime_reserved" in mem["method"]
    monkeypatch.setattr(check, "run_workers", _fake_results("serve", "allocated", 2e8))
    serve = check.check_serve("tiny-llama", gpu, 2, 16, 4)
    assert serve["memory"]["predicted_breakdown_bytes"]["runtime_reserved"] is None
    assert serve["memory"]["measure"] == "allocated" and set(serve["memory"]) == set(mem)


def test_cpu_memory_block_is_resident_and_unchanged(tmp_path, monkeypatch) -> None:
    import fathom.profiling.check as check

    gpu = str(_profile(tmp_path, accelerator="cpu"))
    monkeypatch.setattr(check, "run_workers", _fake_results("train", "resident", None))
    mem = check.check_train("tiny-llama", gpu, 1, 32, steps=1)["memory"]
    assert mem["measure"] == "resident" and mem["measured_reserved_bytes"] is None
    assert "VmHWM" in mem["method"]


def test_a_gpu_refuses_a_run_that_fits_only_without_its_runtime_reserve(tmp_path, gpus, workers, capsys) -> None:
    from fathom.catalog.models import get_model
    from fathom.profiling.check_predict import predict_train, serve_memory

    gpus([H100])
    gpu = str(_profile(tmp_path, memory_gib=1.0))
    spec = get_model("tiny-llama")
    parts = predict_train(spec, gpu, 4, 256, 1)["memory"]  # the CLI's defaults
    assert sum(v for k, v in parts.items() if k != "runtime_reserved") < 1.0 * GIB  # the tensors alone would fit
    err = _refused(capsys, "train", "--model", "tiny-llama", "--gpu", gpu)
    assert "GiB (predicted peak)" in err and "has 1.0 GiB" in err and not workers
    assert sum(serve_memory(spec, 8, 128, 64).values()) < 1.0 * GIB
    assert "GiB (predicted peak)" in _refused(capsys, "serve", "--model", "tiny-llama", "--gpu", gpu)


def test_the_worker_picks_its_device_memory_measure_and_references(monkeypatch) -> None:
    import fathom.profiling.check_worker as worker
    from fathom.profiling.timing import Timer

    assert worker.device_of({"device": "cuda", "rank": 1}) == "cuda:1"
    assert worker.device_of({"rank": 1}) == worker.device_of({"device": "cpu", "rank": 0}) == "cpu"
    cpu = worker.PeakMemory("cpu")
    assert cpu.measure == "resident" and cpu.peak_reserved() is None and cpu.peak() >= 0
    # The CUDA meter reads the allocator's counts (faked here: this machine has no GPU).
    counts = {"allocated": 10.0, "reserved": 20.0, "max_allocated": 110.0, "max_reserved": 220.0}
    resets: list[str] = []
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda d: counts["allocated"])
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda d: counts["reserved"])
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda d: counts["max_allocated"])
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda d: counts["max_reserved"])
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda d: resets.append(d))
    gpu = worker.PeakMemory("cuda:1")
    assert gpu.measure == "allocated" and gpu.reset() and resets == ["cuda:1"]
    assert gpu.peak() == 100.0 and gpu.peak_reserved() == 200.0
    # The speed references are built on the work's device.
    seen: list[str] = []
    monkeypatch.setattr(worker, "SpeedReference", lambda device, timer, names: seen.append(device) or names)
    timer = Timer.make("cpu")
    assert worker._references({"speed_refs": ["memory"]}, timer, "cuda:1") == ["memory"] and seen == ["cuda:1"]
    assert worker._references({"speed_refs": []}, timer, "cuda:1") is None


def test_a_timed_phase_waits_for_queued_work_before_and_after() -> None:
    from fathom.profiling.timing import Timer

    events: list[str] = []
    timer = Timer(lambda: events.append("sync"), lambda: float(len(events)))
    timer.phase(lambda: events.append("work"))
    assert events == ["sync", "work", "sync"]
    events.clear()
    timer.once(lambda: events.append("work"))
    assert events == ["work", "sync"]  # once (the profile's, the collectives') is as it was


def test_the_timed_training_run_skips_the_first_steps_to_its_steady_state(tmp_path, monkeypatch) -> None:
    """AdamW's first step allocates its moments and the next forwards fault fresh pages in: those steps are not
    the steady state a real run's step time is (fathom.profiling.check.TRAIN_WARMUP_STEPS)."""
    import fathom.profiling.check as check

    seen = []
    fake = _fake_results("train", "resident", None)

    def record(args, *rest, **kwargs):
        seen.append((args["memory"], args["warmup"], args["steps"]))
        return fake(args, *rest, **kwargs)

    monkeypatch.setattr(check, "run_workers", record)
    check.check_train("tiny-llama", str(_profile(tmp_path, accelerator="cpu")), 1, 32, steps=2)
    timed = [(w, s) for memory, w, s in seen if not memory]
    assert timed == [(check.TRAIN_WARMUP_STEPS, 2)] and check.TRAIN_WARMUP_STEPS >= 3
