"""Fault tolerance: Young/Daly closed forms, goodput monotone in MTBF, checkpoint modes, CLI contract."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fathom.api import estimate_training_plan
from fathom.cli.app import run
from fathom.reliability.interval import daly_interval, goodput, young_interval

PLAN = dict(model="llama-3.1-8b", gpu="h100-sxm", num_gpus=64, seq_len=8192, global_batch=256, tp=1, pp=1)


def test_young_and_daly_closed_forms():
    c, m = 60.0, 24 * 3600.0
    assert young_interval(c, m) == pytest.approx(math.sqrt(2 * c * m))
    x = c / (2 * m)
    expected = math.sqrt(2 * c * m) * (1 + math.sqrt(x) / 3 + x / 9) - c
    assert daly_interval(c, m) == pytest.approx(expected)
    assert daly_interval(3 * m, m) == pytest.approx(m)  # C >= 2M: checkpoint every MTBF


def test_daly_interval_maximises_goodput():
    c, r, m = 120.0, 600.0, 12 * 3600.0
    taus = np.linspace(60, 20000, 20000)
    best = taus[np.argmax(goodput(taus, c, r, m))]
    assert best == pytest.approx(float(daly_interval(c, m)), rel=0.02)


@settings(max_examples=60, deadline=None)
@given(
    cost=st.floats(1.0, 3600.0),
    restart=st.floats(0.0, 3600.0),
    mtbf=st.floats(3600.0, 1e7),
    shrink=st.floats(0.1, 0.95),
)
def test_goodput_falls_as_mtbf_falls(cost, restart, mtbf, shrink):
    def at(m):
        return float(goodput(daly_interval(cost, m), cost, restart, m))

    high, low = at(mtbf), at(mtbf * shrink)
    assert 0.0 < low <= high <= 1.0


def test_async_blocks_less_than_blocking_and_in_memory_restarts_faster():
    kw = dict(PLAN, tokens=1e11, mtbf_hours=20000.0, storage_bw_GBps=5.0)
    blocking = estimate_training_plan(**kw, checkpoint="blocking").reliability
    asynchronous = estimate_training_plan(**kw, checkpoint="async").reliability
    in_memory = estimate_training_plan(**kw, checkpoint="in-memory").reliability
    assert asynchronous.blocking_s < blocking.blocking_s
    assert asynchronous.goodput >= blocking.goodput
    assert in_memory.restart_s < asynchronous.restart_s
    # 8B params x (2 + 12) bytes: weights + fp32 master and Adam moments
    assert blocking.checkpoint_gib_total == pytest.approx(8.03e9 * 14 / 2**30, rel=0.01)
    assert blocking.cluster_mtbf_hours == pytest.approx(20000.0 / 64)
    assert blocking.run_days_with_failures > estimate_training_plan(**PLAN, tokens=1e11).run.days


def test_given_interval_is_used_and_reported():
    r = estimate_training_plan(**PLAN, mtbf_hours=50000.0, checkpoint_interval_min=30.0).reliability
    assert r.checkpoint_interval_s == pytest.approx(1800.0)
    assert not r.interval_is_optimal


def test_cli_reliability_key_and_bad_input(capsys):
    args = ["train", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--num-gpus", "64", "--seq-len", "8192",
            "--global-batch", "256", "--json"]  # fmt: skip
    assert run(args) == 0
    assert "reliability" in json.loads(capsys.readouterr().out)  # key present (null without the flags)
    assert run([*args, "--mtbf-hours", "50000", "--checkpoint", "async", "--storage-bw", "20"]) == 0
    rel = json.loads(capsys.readouterr().out)["reliability"]
    assert 0 < rel["goodput"] < 1 and rel["checkpoint"] == "async"
    assert run([*args, "--checkpoint", "sometimes"]) == 2
