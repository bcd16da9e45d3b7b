"""`fathom plan train`: the search's best plan against brute force, its filters, and the JSON/CLI contract."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fathom.api import search_training_plans
from fathom.catalog.hardware import resolve_cluster
from fathom.catalog.models import get_model
from fathom.cli.app import run
from fathom.errors import FathomInputError
from fathom.search.objectives import Objective
from fathom.search.pareto import non_dominated, training_pareto
from fathom.search.training_report import describe
from fathom.search.training_search import search_training
from fathom.search.training_space import SearchAxes, enumerate_plans, gpu_counts
from fathom.specs.plan import OFFLOADS, TrainingPlan
from fathom.training.estimator import estimate_training
from fathom.training.plans import validity

# Small spaces (about 100-150 valid plans each), so every plan can also be priced one by one.
CASES = [
    ("gpt3-1.3b", 8, 2048, 16, "throughput", 0.0, dict(
        tp=(1, 2, 4, 8), pp=(1, 2, 4), cp=(1,), vpp=(1, 2), schedule=("1f1b", "interleaved", "zero-bubble"),
        micro_batch=(2,), zero=(1, 3), recompute=("none", "full"), offload=("none",))),
    ("llama-2-7b", 8, 4096, 32, "cost", 0.25, dict(
        tp=(1, 2, 4), pp=(1, 2), cp=(1,), vpp=(1,), schedule=("1f1b", "zero-bubble"), micro_batch=(1, 2),
        zero=(1, 3), recompute=("selective", "full"), offload=("none", "cpu"))),
    ("gpt3-2.7b", 4, 2048, 8, "energy", 0.1, dict(
        tp=(1, 2, 4), pp=(1, 2, 4), cp=(1,), vpp=(1, 2), schedule=("1f1b", "interleaved"), micro_batch=(1, 2),
        zero=(0, 2), recompute=("none", "full"), offload=("none",))),
]  # fmt: skip


def _megatron_rules_hold(model, plan: TrainingPlan) -> bool:
    """Interleaving needs equal chunks (counting the embedding and the head as a layer each with balanced ends) and
    a micro-batch count that is a multiple of pp (Megatron-LM)."""
    if plan.schedule != "interleaved":
        return True
    layers = model.num_layers + 2 * plan.balance_pipeline_ends
    return layers % (plan.pp * plan.vpp) == 0 and plan.grad_accum_steps % plan.pp == 0


def _brute_force(model_name, n, seq, gb, objective, headroom, axes):
    """Best objective value over every valid plan of ``axes``, each priced by `estimate_training`."""
    model, cluster = get_model(model_name), resolve_cluster("h100-sxm", n)
    goal = Objective.build(objective, cluster, None, None)
    limit = cluster.device.memory_gib * (1.0 - headroom)
    keys = list(axes)
    best, count = None, 0
    for combo in itertools.product(*(axes[k] for k in keys)):
        fields = dict(zip(keys, combo, strict=True))
        if n % (fields["tp"] * fields["pp"] * fields["cp"]):
            continue
        fields["dp"] = n // (fields["tp"] * fields["pp"] * fields["cp"])
        plan = TrainingPlan(seq_len=seq, global_batch=gb, **fields)
        if not validity(model, cluster, _arrays([plan]))[0] or not _megatron_rules_hold(model, plan):
            continue
        est = estimate_training(model, cluster, plan)
        if est.memory.peak_gib > limit:
            continue
        count += 1
        score = float(goal.score(est.tokens_per_s, n))
        best = score if best is None else min(best, score)
    return best, count


def _arrays(plans):
    from fathom.training.plans import PlanArrays

    return PlanArrays.from_plans(plans)


@pytest.mark.parametrize("model_name,n,seq,gb,objective,headroom,axes", CASES)
def test_best_plan_is_never_beaten_by_brute_force(model_name, n, seq, gb, objective, headroom, axes):
    brute, count = _brute_force(model_name, n, seq, gb, objective, headroom, axes)
    assert count > 20  # the case is not trivial
    r = search_training_plans(
        model=model_name,
        gpu="h100-sxm",
        num_gpus=n,
        seq_len=seq,
        global_batch=gb,
        objective=objective,
        memory_headroom=headroom,
        axes=SearchAxes(**axes),
        top=3,
    )
    # The search leaves out plans equal to ones it keeps (zero-bubble without a pipeline, ...), never more.
    assert 0 < r.feasible <= count
    goal_sign = -1.0 if objective == "throughput" else 1.0
    assert goal_sign * r.plans[0].objective_value == pytest.approx(brute, rel=1e-9)
    values = [goal_sign * p.objective_value for p in r.plans]
    assert values == sorted(values)


def test_space_is_large_valid_and_free_of_duplicates():
    model, cluster = get_model("gpt3-175b"), resolve_cluster("h100-sxm", 1024)
    plans = enumerate_plans(model, cluster, 2048, 1536)
    assert len(plans) >= 10_000
    assert validity(model, cluster, plans).all()
    rows = np.column_stack([plans.tp, plans.pp, plans.dp, plans.cp, plans.ep, plans.vpp, plans.zero,
                            plans.micro_batch, plans.recompute, plans.schedule, plans.offload])  # fmt: skip
    assert len(np.unique(rows, axis=0)) == len(plans)


def test_layers_that_do_not_split_interleave_with_balanced_ends():
    """Llama 3.1 405B's 126 layers split into no pp x vpp chunks for pp 16; with the embedding and the head taking a
    slot each (128 = 16 x 8, its published layout) the search interleaves them, and only there."""
    model, cluster = get_model("llama-3.1-405b"), resolve_cluster("h100-sxm", 16384)
    plans = enumerate_plans(model, cluster, 8192, 2048)
    assert validity(model, cluster, plans).all()
    ends = plans.balance_pipeline_ends
    chunks = plans.pp * plans.vpp
    assert ends.any() and ((plans.pp == 16) & (plans.vpp == 8) & ends).any()
    assert ((128 % chunks[ends] == 0) & (126 % chunks[ends] != 0)).all()
    assert not (ends & (plans.vpp == 1)).any()
    assert all(_megatron_rules_hold(model, plans.plan(int(i))) for i in np.flatnonzero(ends)[:200])
    best = search_training(model, cluster, seq_len=8192, global_batch=2048, top=1).plans[0]
    assert best.plan["balance_pipeline_ends"] and "balanced-ends" in describe(best)


def test_moe_space_searches_expert_parallelism():
    model, cluster = get_model("mixtral-8x7b"), resolve_cluster("h100-sxm", 64)
    plans = enumerate_plans(model, cluster, 4096, 256)
    assert set(np.unique(plans.ep)) == {1, 2, 4, 8}
    assert validity(model, cluster, plans).all()


@settings(max_examples=8, deadline=None)
@given(low=st.floats(0.0, 0.5), extra=st.floats(0.0, 0.45))
def test_more_headroom_never_helps(low, extra):
    model, cluster = get_model("llama-2-7b"), resolve_cluster("h100-sxm", 8)
    axes = SearchAxes(tp=(1, 2, 4), pp=(1, 2), recompute=("selective",), offload=("none",))
    kw = dict(seq_len=4096, global_batch=32, axes=axes, top=1)
    a = search_training(model, cluster, memory_headroom=low, **kw)
    b = search_training(model, cluster, memory_headroom=low + extra, **kw)
    assert b.feasible <= a.feasible
    if b.feasible:
        assert b.plans[0].tokens_per_s <= a.plans[0].tokens_per_s * (1 + 1e-12)
        limit = b.plans[0].memory.capacity_gib * (1 - low - extra)
        assert all(p.memory.peak_gib <= limit + 1e-9 for p in b.plans)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5), st.integers(0, 5)), min_size=1, max_size=40))
def test_non_dominated_is_exactly_the_front(points):
    costs = np.array(points, dtype=float)
    front = set(non_dominated(costs).tolist())

    def dominates(a, b):
        return np.all(a <= b) and np.any(a < b)

    for i, c in enumerate(costs):
        dominated = any(dominates(o, c) for o in costs)
        duplicate_of_front = any(j in front and j != i and np.array_equal(costs[j], c) for j in range(len(costs)))
        assert (i in front) == (not dominated and not duplicate_of_front)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 9), st.sampled_from([1, 2, 4, 8])), min_size=1, max_size=30))
def test_training_pareto_matches_generic_front(rows):
    tps = np.array([r[0] for r in rows], dtype=float) * 1000
    gpus = np.array([r[1] for r in rows], dtype=float)
    cost = gpus / tps
    fast = training_pareto(tps, cost, gpus)
    generic = non_dominated(np.column_stack([-tps, cost, gpus]))
    key = lambda idx: {(tps[i], cost[i], gpus[i]) for i in idx}  # noqa: E731
    assert key(fast) == key(generic)


def test_gpu_counts():
    counts = gpu_counts(2048, 8)
    assert counts.max() == 2048 and counts.min() == 1
    assert {8, 16, 24, 1024, 1536} <= set(counts.tolist())
    assert all(c < 8 or c % 8 == 0 for c in counts)


def test_max_gpus_searches_the_gpu_count_and_max_days():
    r = search_training_plans(model="gpt3-1.3b", gpu="h100-sxm", max_gpus=16, seq_len=2048, global_batch=32,
                              objective="time", tokens=1e9, top=5, pareto=True)  # fmt: skip
    assert r.gpu_counts == [1, 2, 4, 8, 16]
    assert r.plans[0].num_gpus == 16  # the most GPUs train fastest here
    assert r.pareto and len({p.num_gpus for p in r.pareto}) >= 2
    fastest_days = r.plans[0].run.days
    limited = search_training_plans(model="gpt3-1.3b", gpu="h100-sxm", max_gpus=16, seq_len=2048, global_batch=32,
                                    objective="cost", tokens=1e9, max_days=fastest_days * 1.5)  # fmt: skip
    assert limited.feasible and all(p.run.days <= fastest_days * 1.5 for p in limited.plans)
    assert limited.skipped_gpu_counts  # too few GPUs to make the deadline even at peak rate
    for n in limited.skipped_gpu_counts:  # searched alone, each indeed has no plan within the deadline
        alone = search_training_plans(model="gpt3-1.3b", gpu="h100-sxm", num_gpus=n, seq_len=2048, global_batch=32,
                                      tokens=1e9, max_days=fastest_days * 1.5, top=1)  # fmt: skip
        assert alone.feasible == 0 and alone.closest.run.days > fastest_days * 1.5
    none = search_training_plans(model="gpt3-1.3b", gpu="h100-sxm", max_gpus=16, seq_len=2048, global_batch=32,
                                 tokens=1e9, max_days=fastest_days * 0.5)  # fmt: skip
    assert none.feasible == 0 and "within" in none.message
    assert none.closest.run.days == pytest.approx(fastest_days, rel=1e-6)


def test_no_feasible_plan_shows_the_closest():
    r = search_training_plans(model="llama-3.1-405b", gpu="h100-sxm", num_gpus=8, seq_len=8192, global_batch=64)
    assert r.feasible == 0 and r.plans == []
    assert "no plan fits in memory" in r.message
    assert r.closest is not None and r.closest.memory.headroom_gib < 0
    assert f"{-r.closest.memory.headroom_gib:.1f} GiB over" in r.message


def test_bad_inputs_are_input_errors():
    with pytest.raises(FathomInputError, match="num_gpus/max_gpus"):
        search_training_plans(model="gpt3-1.3b", gpu="h100-sxm", seq_len=2048, global_batch=16)
    with pytest.raises(FathomInputError, match="max_days"):
        search_training_plans(model="gpt3-1.3b", gpu="h100-sxm", num_gpus=8, seq_len=2048, global_batch=16, max_days=3)
    with pytest.raises(FathomInputError, match="price"):
        search_training_plans(model="gpt3-1.3b", gpu="h800", num_gpus=8, seq_len=2048, global_batch=16,
                              objective="cost")  # fmt: skip
    with pytest.raises(FathomInputError, match="plan field"):
        search_training_plans(model="gpt3-1.3b", gpu="h100-sxm", num_gpus=8, seq_len=2048, global_batch=16, tp=2)
    with pytest.raises(FathomInputError, match="no valid plan.*global batch 4"):
        search_training_plans(model="gpt3-1.3b", gpu="h100-sxm", num_gpus=8, seq_len=2048, global_batch=4,
                              axes=SearchAxes(tp=(1,), pp=(1,), cp=(1,)))  # fmt: skip


PLAN_ARGS = ["plan", "train", "--model", "gpt3-1.3b", "--gpu", "h100-sxm", "--seq-len", "2048", "--global-batch", "16"]


def test_cli_json_contract(capsys):
    assert run(PLAN_ARGS + ["--num-gpus", "8", "--top", "3", "--tokens", "1e9", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {"space_size", "feasible", "seconds", "plans"} <= set(data)
    assert data["space_size"] >= data["feasible"] > 0 and len(data["plans"]) == 3
    plan_keys = {"tp", "pp", "dp", "cp", "ep", "vpp", "zero", "micro_batch", "recompute", "schedule", "offload"}
    train_keys = {"step_time_s", "tokens_per_s", "tokens_per_s_per_gpu", "tflops_per_gpu", "mfu", "hfu", "fits",
                  "memory", "time_breakdown", "bottleneck", "plan", "grad_accum_steps", "run"}  # fmt: skip
    for p in data["plans"]:
        assert plan_keys | train_keys <= set(p)
        assert p["tp"] * p["pp"] * p["dp"] * p["cp"] == 8
        assert p["step_time_s"] == pytest.approx(sum(p["time_breakdown"].values()), rel=1e-9)
    assert [p["rank"] for p in data["plans"]] == [1, 2, 3]
    assert data["plans"][0]["tokens_per_s"] >= data["plans"][1]["tokens_per_s"]


def test_cli_matches_fathom_train_for_the_winner(capsys):
    assert run(PLAN_ARGS + ["--num-gpus", "8", "--top", "1", "--json"]) == 0
    best = json.loads(capsys.readouterr().out)["plans"][0]
    args = ["train", "--model", "gpt3-1.3b", "--gpu", "h100-sxm", "--num-gpus", "8", "--seq-len", "2048",
            "--global-batch", "16", "--json"]  # fmt: skip
    for key in ("tp", "pp", "dp", "cp", "vpp", "zero", "micro_batch", "recompute", "schedule", "offload"):
        args += [f"--{key.replace('_', '-')}", str(best[key])]
    assert run(args) == 0
    single = json.loads(capsys.readouterr().out)
    assert single["step_time_s"] == pytest.approx(best["step_time_s"], rel=1e-12)
    assert single["memory"]["peak_gib"] == pytest.approx(best["memory"]["peak_gib"], rel=1e-12)


def test_cli_text_and_exit_codes(capsys):
    assert run(PLAN_ARGS + ["--num-gpus", "8", "--top", "2", "--pareto"]) == 0
    out = capsys.readouterr().out
    assert "plans searched" in out and "best:" in out and "Pareto" in out
    assert run(["plan", "train", "--model", "llama-3.1-405b", "--gpu", "h100-sxm", "--num-gpus", "8",
                "--seq-len", "8192", "--global-batch", "64"]) == 0  # fmt: skip
    assert "no feasible plan" in capsys.readouterr().out
    assert run(PLAN_ARGS) == 2  # neither --num-gpus nor --max-gpus
    assert run(PLAN_ARGS + ["--num-gpus", "8", "--max-gpus", "16"]) == 2
    assert run(PLAN_ARGS + ["--num-gpus", "8", "--max-days", "3"]) == 2
    assert run(PLAN_ARGS + ["--num-gpus", "8", "--objective", "speed"]) == 2
    assert run(PLAN_ARGS + ["--num-gpus", "8", "--recompute", "sometimes"]) == 2
    assert run(["plan", "train", "--model", "gpt-5", "--gpu", "h100-sxm", "--num-gpus", "8", "--seq-len", "2048",
                "--global-batch", "16"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert err.count("error:") >= 5 and "Traceback" not in err


@pytest.mark.parametrize("gpus", [1, 8])
def test_space_puts_nvme_offload_under_zero3_only(gpus):
    """DeepSpeed runs NVMe offload under ZeRO stage 3 only; one shard keeps ZeRO 3 for it (ZeRO-Infinity)."""
    model, cluster = get_model("llama-2-7b"), resolve_cluster("h100-sxm", gpus)
    p = enumerate_plans(model, cluster, 4096, 16, SearchAxes(recompute=("full",)))
    nvme = p.offload == OFFLOADS.index("nvme")
    assert nvme.any() and (p.zero[nvme] == 3).all()
    assert validity(model, cluster, p).all()


@pytest.mark.parametrize(
    ("axes", "field"),
    [({"tp": (0,)}, "tp"), ({"pp": ("2",)}, "pp"), ({"micro_batch": (1.5,)}, "micro_batch"),
     ({"zero": (4,)}, "zero"), ({"zero": (True,)}, "zero"), ({"recompute": ("some",)}, "recompute")],
)  # fmt: skip
def test_search_axes_refuse_bad_candidates_in_one_line(axes: dict, field: str) -> None:
    """Every bad candidate is a FathomInputError naming its axis (one line, as the CLI prints it), never a raw
    ValueError from a conversion."""
    with pytest.raises(FathomInputError, match=f"^{field}: ") as err:
        SearchAxes(**axes)
    assert "\n" not in str(err.value)
