"""Compute budgets: Chinchilla optimum, data-constrained correction, batch bounds, shapes, the command."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fathom.budget.batch import deepseek_batch_tokens, kaplan_critical_batch_tokens
from fathom.budget.scaling import chinchilla_optimum, data_constrained_optimum, effective_tokens, loss
from fathom.budget.shape import dense_shape
from fathom.cli.app import run


def test_compute_optimal_spends_the_budget_and_minimises_loss():
    budgets = np.array([1e21, 5.76e23, 3.8e25])
    o = chinchilla_optimum(budgets)
    np.testing.assert_allclose(6 * o.params * o.tokens, budgets, rtol=1e-9)
    for c, n in zip(budgets, o.params, strict=True):
        around = n * np.array([0.8, 1.0, 1.25])
        assert np.argmin(loss(around, c / (6 * around))) == 1


def test_data_constrained_repeats_and_shrinks_effective_data():
    assert effective_tokens(1e12, np.inf) == pytest.approx(1e12)
    assert effective_tokens(4e12, 1e12) < 4e12
    assert effective_tokens(1e15, 1e12) <= 1e12 * (1 + 15.4) * (1 + 1e-12)  # saturates at U (1 + R*)
    free = chinchilla_optimum(3.8e25)
    scarce = data_constrained_optimum(3.8e25, 1e12)
    assert 6 * scarce.params[0] * scarce.tokens[0] == pytest.approx(3.8e25)
    assert scarce.epochs[0] > 1 and scarce.loss[0] > free.loss
    plenty = data_constrained_optimum(3.8e25, 1e15)
    assert plenty.params[0] == pytest.approx(float(free.params), rel=0.01)


def test_batch_bounds():
    assert deepseek_batch_tokens(1e24) == pytest.approx(0.2920 * 1e24**0.3271)
    assert kaplan_critical_batch_tokens(2.0) > kaplan_critical_batch_tokens(3.0)  # lower loss, larger batch


def test_dense_shape_hits_the_parameter_count():
    for n in (1e9, 7e9, 7e10):
        spec = dense_shape(n)
        assert spec.num_params == pytest.approx(n, rel=0.25)
        assert spec.num_heads % spec.num_kv_heads == 0


def test_budget_command(capsys):
    args = ["budget", "--flops", "1e22", "--gpu", "h100-sxm", "--num-gpus", "64", "--json"]
    assert run(args) == 0
    r = json.loads(capsys.readouterr().out)
    assert 6 * r["params_optimal"] * r["tokens"] == pytest.approx(1e22)
    assert r["global_batch"] * r["seq_len"] <= r["critical_batch_tokens"]
    assert r["estimate"]["run"]["days"] > 0 and r["estimate"]["run"]["energy_phase_mwh"] > 0
    assert run(["budget", "--gpu", "h100-sxm", "--num-gpus", "8"]) == 2
    assert run(["budget", "--flops", "-1", "--gpu", "h100-sxm", "--num-gpus", "8"]) == 2


def test_gpu_day_budget_converges_to_its_days(capsys):
    assert run(["budget", "--gpu-days", "640", "--gpu", "h100-sxm", "--num-gpus", "64", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["estimate"]["run"]["days"] * 64 == pytest.approx(640, rel=0.05)
