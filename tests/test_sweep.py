"""``fathom sweep``: grid expansion, resumable runs, and Ray giving the same table as local processes."""

from __future__ import annotations

import pytest
import yaml

from fathom.cli.app import run
from fathom.errors import FathomInputError
from fathom.sweep import expand, run_sweep
from fathom.sweep import run as sweep_run
from fathom.sweep.store import checkpoint_path, read_rows

TRAIN = {
    "kind": "train",
    "fixed": {"model": "gpt3-1.3b", "num_gpus": 8, "seq_len": 2048, "global_batch": 64},
    "grid": {"gpu": ["h100-sxm", "a100-80gb"], "tp": [1, 2], "pp": [1, 2]},
}
SERVE = {
    "kind": "serve",
    "fixed": {
        "model": "llama-3.2-1b",
        "gpu": "h100-sxm",
        "rate": 4,
        "num_requests": 20,
        "input_len": 256,
        "output_len": 16,
    },
    "list": [{"tp": 1}, {"tp": 2, "precision": "fp8"}, {"tp": 1, "precision": "fp7"}],
}
SPEC = {"scenarios": [TRAIN, SERVE]}


def test_grid_and_list_expansion():
    scenarios = expand(SPEC)
    assert len(scenarios) == 2 * 2 * 2 + 3
    train = [s for s in scenarios if s.kind == "train"]
    assert {(s.inputs["gpu"], s.inputs["tp"], s.inputs["pp"]) for s in train} == {
        (g, t, p) for g in ("h100-sxm", "a100-80gb") for t in (1, 2) for p in (1, 2)
    }
    assert all(s.inputs["seq_len"] == 2048 for s in train)
    assert len({s.id for s in scenarios}) == len(scenarios)
    # ids depend on the inputs only: reordering the spec keeps them
    again = expand({"scenarios": [SERVE, {**TRAIN, "grid": dict(reversed(list(TRAIN["grid"].items())))}]})
    assert {s.id for s in again} == {s.id for s in scenarios}


@pytest.mark.parametrize(
    "spec",
    [
        {},
        {"scenarios": [{"kind": "bake"}]},
        {"scenarios": [{"kind": "train", "grid": {"tp": []}}]},
        {"scenarios": [{"kind": "train", "grids": {}}]},
    ],
)
def test_bad_spec_is_an_input_error(spec):
    with pytest.raises(FathomInputError):
        expand(spec)


def _rows(path):
    return sorted(read_rows(path), key=lambda r: r["scenario_id"])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    path = tmp_path_factory.mktemp("ref") / "ref.parquet"
    run_sweep(expand(SPEC), path, progress=False)
    return _rows(path)


def test_rows_hold_inputs_outputs_and_errors(reference):
    assert len(reference) == 11
    ok = [r for r in reference if r["status"] == "ok"]
    bad = [r for r in reference if r["status"] == "error"]
    assert bad and all(r["error"] for r in bad)  # an unknown precision: a row, not a failed sweep
    train = next(r for r in ok if r["kind"] == "train")
    assert train["in.gpu"] in ("h100-sxm", "a100-80gb") and train["out.step_time_s"] > 0
    assert "out.memory.peak_gib" in train
    serve = next(r for r in ok if r["kind"] == "serve")
    assert serve["out.ttft_s.p90"] > 0 and serve["out.completed"] == 20


def test_interrupted_sweep_resumes_without_redoing_rows(tmp_path, monkeypatch, reference):
    path = tmp_path / "out.csv"
    scenarios = expand(SPEC)
    calls = []
    real = sweep_run.run_scenario

    def flaky(s):
        if len(calls) == 4:
            raise KeyboardInterrupt
        calls.append(s.id)
        return real(s)

    monkeypatch.setattr(sweep_run, "run_scenario", flaky)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(scenarios, path, progress=False)
    assert not path.exists() and checkpoint_path(path).exists()
    assert len(read_rows(path)) == 4
    done, calls[:] = set(calls), []
    monkeypatch.setattr(sweep_run, "run_scenario", lambda s: calls.append(s.id) or real(s))
    summary = run_sweep(scenarios, path, progress=False)
    assert summary.skipped == 4 and summary.ran == 7 and not done & set(calls)
    assert not checkpoint_path(path).exists()
    assert _rows(path) == reference
    assert run_sweep(scenarios, path, progress=False).ran == 0


def test_cli_sweep(tmp_path, capsys):
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump({"scenarios": [TRAIN]}))
    out = tmp_path / "r.parquet"
    assert run(["sweep", str(spec), "--out", str(out), "--jobs", "2", "--no-progress"]) == 0
    assert "8 scenarios: 8 run" in capsys.readouterr().out
    assert run(["sweep", str(spec), "--out", str(tmp_path / "r.txt")]) == 2
    assert run(["sweep", str(tmp_path / "missing.yaml"), "--out", str(out)]) == 2


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_equals_local_processes_row_for_row(ray_local, tmp_path, reference):
    path = tmp_path / "ray.parquet"
    run_sweep(expand(SPEC), path, ray="local", progress=False)
    assert _rows(path) == reference
