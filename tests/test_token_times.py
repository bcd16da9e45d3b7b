"""Token times kept as runs of a replica's iteration log, and ITL statistics computed from counted gaps."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fathom.serving.metrics import counted_stats, stats
from fathom.serving.token_times import TokenTimes, itl_sample


def test_runs_read_back_as_the_log_slices_they_reference():
    log = [0.1, 0.2, 0.35, 0.5, 0.7]
    t = TokenTimes()
    t.append(0.05)
    t.extend_run(log, 1, 3)
    t.extend_run(log, 3, 5)  # continues the run: merged, not a new part
    assert len(t) == 5 and t == [0.05, 0.2, 0.35, 0.5, 0.7] and t[-1] == 0.7
    assert len(t._parts) == 2
    assert np.asarray(t).tolist() == t.tolist() and list(t) == t.tolist()
    t.extend_run(log, 4, 4)  # empty: nothing recorded
    assert len(t) == 5
    assert not TokenTimes() and TokenTimes([1.0]) == [1.0]


def test_itl_sample_of_two_requests_sharing_a_log():
    log = [1.0, 2.0, 4.0, 7.0, 11.0]
    a, b = TokenTimes([0.5]), TokenTimes()
    a.extend_run(log, 0, 4)  # 0.5 | 1 2 4 7
    b.extend_run(log, 2, 5)  # 4 7 11
    b.extend(np.array([11.5, 12.0]))  # explicit times after the run (speculative tokens)
    values, counts = itl_sample([a, b, [20.0, 20.25]])  # a plain list is taken as it is
    pooled = np.repeat(values, counts.astype(int))
    expected = np.concatenate([np.diff(a.to_array()), np.diff(b.to_array()), [0.25]])
    assert sorted(pooled.tolist()) == sorted(expected.tolist())


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(0.001, 1.0), min_size=2, max_size=40),
    st.lists(st.tuples(st.integers(0, 39), st.integers(0, 39), st.booleans()), min_size=1, max_size=12),
)
def test_itl_pool_equals_the_gaps_of_the_materialised_times(steps, spans):
    """Whatever runs and single times the requests hold, the counted pool is the multiset of their gaps."""
    log = np.cumsum(steps).tolist()
    requests = []
    for lo, hi, lead in spans:
        lo, hi = sorted((min(lo, len(log)), min(hi, len(log))))
        t = TokenTimes([log[0] - 0.5] if lead else [])
        t.extend_run(log, lo, hi)
        requests.append(t)
    values, counts = itl_sample(requests)
    pooled = sorted(np.repeat(values, counts.astype(int)).tolist())
    expected = sorted(g for t in requests for g in np.diff(t.to_array()).tolist())
    assert pooled == pytest.approx(expected)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.floats(0.0, 10.0), st.integers(0, 6)), min_size=1, max_size=30))
def test_counted_stats_equal_stats_of_the_expanded_sample(pairs):
    values = np.array([v for v, _ in pairs])
    counts = np.array([c for _, c in pairs], dtype=float)
    got = counted_stats(values, counts)
    want = stats(np.repeat(values, counts.astype(int)))
    for key in ("p50", "p90", "p95", "p99", "mean"):
        g, w = getattr(got, key), getattr(want, key)
        assert (g is None and w is None) or g == pytest.approx(w, rel=1e-12, abs=1e-12)
