"""Sweep serve scenarios take the ``fathom serve`` flags (one table, checked against the command), give the same
numbers as ``fathom serve --json``, and turn bad values into error rows instead of aborting the sweep."""

from __future__ import annotations

import inspect
import json
from dataclasses import fields

import pytest
import typer
import yaml

from fathom.api.serving import Workload, simulate_serving
from fathom.cli.app import app, run
from fathom.errors import FathomInputError
from fathom.specs.serving import ServingPlan
from fathom.sweep import expand, run_sweep
from fathom.sweep.scenario import _serve
from fathom.sweep.serve_inputs import API_INPUTS, OUTPUT_FLAGS, SERVE_INPUTS
from fathom.sweep.spec import Scenario
from fathom.sweep.store import checkpoint_path, read_rows

BASE = {"model": "llama-3.2-1b", "gpu": "h100-sxm", "rate": 4, "num_requests": 20, "input_len": 256, "output_len": 16}


def _serve_options():
    return {p.name: p for p in typer.main.get_command(app).commands["serve"].params}


def test_table_is_every_fathom_serve_option():
    options = _serve_options()
    assert set(SERVE_INPUTS) == set(options) - set(OUTPUT_FLAGS)
    kinds = {"int": int, "float": float, "bool": bool, "str": str, "length": int, "split": str}
    for name, spec in SERVE_INPUTS.items():
        option = options[name]
        assert kinds[spec.type] is option.type_descriptor.annotation, name
        for ours, theirs in ((spec.low, option.min), (spec.high, option.max)):
            assert theirs is None or ours == theirs, name  # as strict as serve, or stricter where it checks later


def test_table_targets_exist_in_the_api():
    call = set(inspect.signature(simulate_serving).parameters)
    plan = set(ServingPlan.model_fields)
    workload = {f.name for f in fields(Workload)}
    for name, spec in {**SERVE_INPUTS, **API_INPUTS}.items():
        target = {"call": call, "plan": plan, "workload": workload, "decode_plan": plan}.get(spec.to)
        assert target is None or spec.name in target, name


def _cli_json(inputs: dict, capsys) -> dict:
    argv = ["serve", "--json"]
    for key, value in inputs.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value is False:
            argv.append(f"--no-{key.replace('_', '-')}")
        else:
            argv += [flag, str(value)]
    capsys.readouterr()
    assert run(argv) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


LEVERS = [
    {"input_dist": "lognormal:mean=300,sigma=0.8", "output_dist": "lognormal:mean=24,sigma=0.5", "seed": 3,
     "capacity_policy": "guaranteed-no-evict", "nano_batches": 2},
    {"speculative": "ngram", "spec_tokens": 3, "spec_acceptance": 0.7},
    {"lora_adapters": 8, "adapter_rank": 8, "adapter_dist": "zipf:a=1.2", "max_loras_per_batch": 2,
     "adapter_targets": "all-linear"},
    {"offload_weights": "cpu", "resident_weight_fraction": 0.5, "offload_kv": "cpu"},
    {"disaggregate": "1:1", "decode_tp": 2, "kv_link_bw": 50.0},
    {"samples": 2, "sliding_window": False, "cuda_graphs": False, "host_profile": "vllm-v0-eager"},
]  # fmt: skip


@pytest.mark.parametrize("levers", LEVERS, ids=lambda d: next(iter(d)))
def test_serve_levers_equal_fathom_serve(levers, capsys):
    inputs = {**BASE, **levers}
    if "input_dist" in levers:
        inputs.pop("input_len"), inputs.pop("output_len")
    assert _serve(inputs) == _cli_json(inputs, capsys)


def test_closed_loop_and_offline_as_fathom_serve(capsys):
    closed = {**BASE, "concurrency": 4}
    closed.pop("rate")
    assert _serve(closed) == _cli_json(closed, capsys)
    offline = {**closed, "offline": True}
    offline.pop("concurrency")
    assert _serve(offline) == _cli_json(offline, capsys)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"seed": -1}, "seed: expected an integer >= 0, got -1"),
        ({"tp": 0}, "tp: expected an integer >= 1"),
        ({"rate": "fast"}, "rate: expected a number"),
        ({"prefix_caching": "yes"}, "prefix_caching: expected true or false"),
        ({"disaggregate": 121}, "quote it"),  # what YAML makes of an unquoted 2:1
        ({"concurrency": 4}, "give one of rate, concurrency, offline, trace (got rate, concurrency)"),
        ({"speculative": "ngram"}, "--spec-acceptance"),
        ({"offload_weights": "disk"}, "offload_weights"),
        ({"resident_weight_fraction": 0.5}, "needs offload_weights"),
        ({"rate": None, "offline": True, "duration": 5}, "workload (offline): ignores duration; drop it"),
        ({"rate": None, "trace": "t.jsonl", "cv": 2.0}, "workload (trace): ignores num_requests, input_len"),
    ],
)
def test_bad_values_are_error_rows(tmp_path, bad, message):
    path = tmp_path / "out.csv"
    inputs = {k: v for k, v in {**BASE, **bad}.items() if v is not None}
    scenarios = [Scenario("serve", inputs), Scenario("serve", dict(BASE))]
    summary = run_sweep(scenarios, path, progress=False)
    assert summary.errors == 1
    rows = {r["scenario_id"]: r for r in read_rows(path)}
    bad_row, good_row = rows[scenarios[0].id], rows[scenarios[1].id]
    assert bad_row["status"] == "error" and message in bad_row["error"] and "\n" not in bad_row["error"]
    assert good_row["status"] == "ok" and good_row["out.completed"] == 20


def test_negative_seed_in_a_yaml_sweep_is_a_row_not_a_traceback(tmp_path, capsys):
    spec = tmp_path / "s.yaml"
    spec.write_text(
        yaml.safe_dump({"scenarios": [{"kind": "serve", "fixed": BASE, "list": [{"seed": -1}, {"seed": 0}]}]})
    )
    out = tmp_path / "r.csv"
    assert run(["sweep", str(spec), "--out", str(out), "--no-progress"]) == 0
    assert "2 scenarios: 2 run, 0 already done, 1 with errors" in capsys.readouterr().out
    assert sorted(r["status"] for r in read_rows(out)) == ["error", "ok"]
    assert not checkpoint_path(out).exists()


@pytest.mark.parametrize(
    ("block", "where", "suggestion"),
    [
        ({"fixed": {**BASE, "inputdist": "lognormal:mean=3,sigma=1"}}, "scenarios[0].fixed", "'input_dist'"),
        ({"fixed": BASE, "grid": {"lora_adapter": [2, 4]}}, "scenarios[0].grid", "'lora_adapters'"),
        ({"fixed": BASE, "list": [{"tp": 1}, {"decodetp": 2}]}, "scenarios[0].list[1]", "'decode_tp'"),
    ],
)
def test_unknown_input_names_the_key_and_close_matches(block, where, suggestion):
    with pytest.raises(FathomInputError) as err:
        expand({"scenarios": [{"kind": "serve", **block}]})
    text = str(err.value)
    assert where in text and "unknown serve input" in text and f"did you mean {suggestion}" in text
    assert "\n" not in text


def test_unknown_input_exits_2_in_one_line(tmp_path, capsys):
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump({"scenarios": [{"kind": "serve", "fixed": {**BASE, "out": "x.csv"}}]}))
    assert run(["sweep", str(spec), "--out", str(tmp_path / "r.csv"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "output option of `fathom serve`" in err and "\n" not in err
