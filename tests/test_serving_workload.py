"""Workloads: distributions have the asked-for moments, arrivals the asked-for process, traces fail loudly per line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fathom.errors import FathomInputError
from fathom.serving.workload import (
    PrefixSpec,
    generate_requests,
    load_trace,
    make_request_factory,
    parse_length_dist,
)

N = 200_000


def _one_line(excinfo: pytest.ExceptionInfo[FathomInputError]) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def _gen(arrival="poisson", rate=10.0, num_requests=1000, duration_s=None, cv=1.0, seed=0, inp="100", out="10", **kw):
    return generate_requests(
        arrival=arrival, rate=rate, num_requests=num_requests, duration_s=duration_s, cv=cv,
        input_dist=parse_length_dist(inp, "--input-len"), output_dist=parse_length_dist(out, "--output-len"),
        rng=np.random.default_rng(seed), **kw,
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------- lengths


@pytest.mark.parametrize(
    ("spec", "mean", "rel"),
    [
        ("128", 128, 0), ("fixed:64", 64, 0), ("uniform:low=10,high=30", 20, 0.005),
        ("normal:mean=500,std=50", 500, 0.005), ("lognormal:mean=1000,sigma=1.0", 1000, 0.02),
        ("lognormal:mean=300, sigma=0.5", 300, 0.01),
    ],
)  # fmt: skip
def test_length_distributions_have_the_requested_mean(spec, mean, rel):
    dist = parse_length_dist(spec, "--input-len")
    x = dist.sample(np.random.default_rng(1), N)
    assert x.dtype == np.int64 and x.min() >= 1
    assert x.mean() == pytest.approx(mean, rel=rel, abs=0.5 if rel else 0)
    assert dist.mean == pytest.approx(mean)


def test_lognormal_mean_is_the_distribution_mean_not_mu():
    x = parse_length_dist("lognormal:mean=200,sigma=1.5", "f").sample(np.random.default_rng(2), 1_000_000)
    assert x.mean() == pytest.approx(200, rel=0.03)  # mu = ln(200) - 1.125: the median sits far below the mean
    assert np.median(x) == pytest.approx(200 * np.exp(-(1.5**2) / 2), rel=0.03)


def test_uniform_covers_both_ends_and_normal_is_truncated_at_one():
    x = parse_length_dist("uniform:low=3,high=5", "f").sample(np.random.default_rng(0), 10_000)
    assert set(np.unique(x)) == {3, 4, 5}
    y = parse_length_dist("normal:mean=2,std=10", "f").sample(np.random.default_rng(0), 10_000)
    assert y.min() >= 1


def test_empirical_plain_and_csv(tmp_path):
    plain = tmp_path / "lens.txt"
    plain.write_text("10\n20\n\n30\n")
    x = parse_length_dist(f"empirical:{plain}", "--input-len").sample(np.random.default_rng(0), 30_000)
    assert set(np.unique(x)) == {10, 20, 30} and x.mean() == pytest.approx(20, rel=0.02)
    table = tmp_path / "trace.csv"
    table.write_text("arrival_s,prompt_tokens,completion_tokens\n0,7,70\n1,9,90\n")
    inputs = parse_length_dist(f"empirical:{table}", "--input-len").sample(np.random.default_rng(0), 100)
    outputs = parse_length_dist(f"empirical:{table}", "--output-len").sample(np.random.default_rng(0), 100)
    assert set(inputs) == {7, 9} and set(outputs) == {70, 90}  # trace column names picked by the field
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,5\n2,6\n")
    chosen = parse_length_dist(f"empirical:{other},column=b", "x").sample(np.random.default_rng(0), 100)
    assert set(chosen) == {5, 6}


def test_empirical_errors_name_the_line(tmp_path):
    bad = tmp_path / "lens.txt"
    bad.write_text("10\n0\n")
    with pytest.raises(FathomInputError) as excinfo:
        parse_length_dist(f"empirical:{bad}", "--input-len")
    assert "line 2" in _one_line(excinfo) and "--input-len" in str(excinfo.value)
    with pytest.raises(FathomInputError, match="no such file"):
        parse_length_dist(f"empirical:{tmp_path / 'missing.txt'}", "--input-len")
    table = tmp_path / "t.csv"
    table.write_text("a,b\n1,2\n")
    with pytest.raises(FathomInputError, match="column=NAME"):
        parse_length_dist(f"empirical:{table}", "--input-len")
    with pytest.raises(FathomInputError, match="did you mean 'a'"):
        parse_length_dist(f"empirical:{table},column=aa", "--input-len")


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("lognorm:mean=3,sigma=1", "did you mean 'lognormal'"), ("gaussian:mean=3", "valid:"),
        ("uniform:low=3", "needs high="), ("uniform:low=3,hgh=4", "did you mean 'high'"),
        ("uniform:low=5,high=2", "low <= high"), ("normal:mean=abc,std=1", "not a number"),
        ("lognormal:mean=0,sigma=1", "mean >= 1"), ("fixed:0", ">= 1"), ("0", ">= 1"), ("fixed:2.5", "whole"),
        ("", "unknown length distribution"),
    ],
)  # fmt: skip
def test_spec_errors_are_one_line_and_name_the_field(spec, fragment):
    with pytest.raises(FathomInputError) as excinfo:
        parse_length_dist(spec, "--output-len")
    message = _one_line(excinfo)
    assert message.startswith("--output-len") and fragment in message


# ---------------------------------------------------------------------------------------------- arrivals


def _gaps(requests):
    return np.diff([r.arrival_s for r in requests])


def test_poisson_gaps_have_mean_inverse_rate_and_cv_one():
    gaps = _gaps(_gen(rate=8.0, num_requests=100_000))
    assert gaps.mean() == pytest.approx(1 / 8, rel=0.02)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.02)


@pytest.mark.parametrize("cv", [0.5, 1.0, 2.0, 4.0])
def test_gamma_gaps_have_the_requested_cv(cv):
    gaps = _gaps(_gen("gamma", rate=5.0, num_requests=200_000, cv=cv))
    assert gaps.mean() == pytest.approx(1 / 5, rel=0.03)
    assert gaps.std() / gaps.mean() == pytest.approx(cv, rel=0.06)


def test_fixed_rate_and_offline():
    fixed = _gen("fixed-rate", rate=4.0, num_requests=9)
    assert [r.arrival_s for r in fixed] == [i / 4 for i in range(9)]
    offline = _gen("offline", rate=None, num_requests=50)
    assert len(offline) == 50 and all(r.arrival_s == 0 for r in offline)
    assert [r.id for r in offline] == list(range(50))


def test_stopping_at_num_requests_or_duration():
    assert len(_gen(num_requests=123)) == 123
    timed = _gen(rate=50.0, num_requests=None, duration_s=200.0)
    assert max(r.arrival_s for r in timed) < 200.0
    assert len(timed) == pytest.approx(50 * 200, rel=0.05)
    assert len(_gen(rate=50.0, num_requests=30, duration_s=200.0)) == 30  # whichever comes first
    assert len(_gen(rate=1.0, num_requests=10_000, duration_s=5.0)) <= 20
    assert len(_gen("fixed-rate", rate=2.0, num_requests=None, duration_s=10.0)) == 20
    assert len(_gen("gamma", rate=50.0, num_requests=None, duration_s=100.0, cv=3.0)) == pytest.approx(5000, rel=0.2)


def test_same_seed_same_requests_and_different_seed_differs():
    a, b, c = (
        _gen(seed=7, inp="lognormal:mean=400,sigma=1"),
        _gen(seed=7, inp="lognormal:mean=400,sigma=1"),
        _gen(seed=8),
    )
    assert a == b
    assert [r.arrival_s for r in a] != [r.arrival_s for r in c]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"arrival": "posson"}, "arrival"), ({"rate": None}, "rate"), ({"rate": 0.0}, "rate"),
        ({"num_requests": 0}, "num_requests"), ({"num_requests": None}, "num_requests"),
        ({"arrival": "offline", "num_requests": None, "duration_s": 5.0}, "num_requests"),
        ({"duration_s": -1.0}, "duration_s"), ({"arrival": "gamma", "cv": 0.0}, "cv"), ({"cv": 2.0}, "cv"),
        ({"rate": 1e9, "num_requests": None, "duration_s": 1e9}, "num_requests"),
    ],
)  # fmt: skip
def test_arrival_errors_name_the_field(kwargs, field):
    with pytest.raises(FathomInputError) as excinfo:
        _gen(**kwargs)
    assert _one_line(excinfo).startswith(field)


def test_unknown_arrival_suggests_the_close_name():
    with pytest.raises(FathomInputError, match="did you mean 'poisson'"):
        _gen(arrival="posson")


# ---------------------------------------------------------------------------------------------- prefixes


def test_shared_prefixes():
    requests = _gen(num_requests=20_000, inp="uniform:low=1,high=50", prefix=PrefixSpec(4, 100, 0.75))
    shared = [r for r in requests if r.prefix_id is not None]
    assert len(shared) / len(requests) == pytest.approx(0.75, abs=0.02)
    assert {r.prefix_id for r in shared} == {"p0", "p1", "p2", "p3"}
    assert all(r.prefix_len == 100 and r.input_tokens >= 101 for r in shared)
    assert all(r.prefix_len == 0 and r.input_tokens <= 50 for r in requests if r.prefix_id is None)


@pytest.mark.parametrize("args", [(0, 10, 0.5), (2, 0, 0.5), (2, 10, 1.5)])
def test_bad_prefix_spec(args):
    with pytest.raises(FathomInputError, match="prefix"):
        PrefixSpec(*args)


def test_request_factory_for_closed_loop():
    factory = make_request_factory(
        parse_length_dist("fixed:7", "i"), parse_length_dist("3", "o"), PrefixSpec(1, 5, 1.0)
    )
    request = factory(42, 3.5, np.random.default_rng(0))
    assert (request.id, request.arrival_s, request.input_tokens, request.output_tokens) == (42, 3.5, 7, 3)
    assert (request.prefix_id, request.prefix_len) == ("p0", 5)
    plain = make_request_factory(parse_length_dist("lognormal:mean=50,sigma=1", "i"), parse_length_dist("3", "o"))
    rng = np.random.default_rng(1)
    drawn = [plain(i, 0.0, rng) for i in range(2000)]
    assert np.mean([r.input_tokens for r in drawn]) == pytest.approx(50, rel=0.1)
    assert all(r.prefix_id is None for r in drawn)


@settings(max_examples=60, deadline=None)
@given(
    arrival=st.sampled_from(["poisson", "gamma", "fixed-rate", "offline"]),
    rate=st.floats(0.01, 1000),
    cv=st.floats(0.1, 5),
    n=st.integers(1, 300),
    seed=st.integers(0, 2**32 - 1),
    inp=st.sampled_from(["1", "uniform:low=1,high=3", "normal:mean=1,std=30", "lognormal:mean=1,sigma=3"]),
    out=st.sampled_from(["fixed:1", "normal:mean=5,std=100", "lognormal:mean=2000,sigma=2.5"]),
    share=st.floats(0, 1),
)
def test_property_lengths_positive_and_arrivals_sorted(arrival, rate, cv, n, seed, inp, out, share):
    requests = _gen(
        arrival, rate=rate, num_requests=n, cv=cv if arrival == "gamma" else 1.0, seed=seed, inp=inp, out=out,
        prefix=PrefixSpec(3, 8, share),
    )  # fmt: skip
    assert len(requests) == n and [r.id for r in requests] == list(range(n))
    assert all(r.input_tokens >= 1 and r.output_tokens >= 1 for r in requests)
    assert all(r.input_tokens > r.prefix_len for r in requests)
    arrivals = np.array([r.arrival_s for r in requests])
    assert arrivals[0] == 0 and np.all(np.diff(arrivals) >= 0)


# ------------------------------------------------------------------------------------------------ traces


def test_load_jsonl_with_alternative_names(tmp_path):
    path = tmp_path / "t.jsonl"
    lines = [
        {"arrival_s": 0.0, "input_tokens": 10, "output_tokens": 5},
        {"timestamp": 0.5, "prompt_tokens": 20, "completion_tokens": 6, "prefix_id": "sys", "prefix_len": 8},
        {"arrival_time": 0.5, "input_len": 30, "output_len": 7, "extra": "ignored"},
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    requests = load_trace(path)
    assert [(r.id, r.arrival_s, r.input_tokens, r.output_tokens) for r in requests] == [
        (0, 0.0, 10, 5), (1, 0.5, 20, 6), (2, 0.5, 30, 7),
    ]  # fmt: skip
    assert (requests[1].prefix_id, requests[1].prefix_len) == ("sys", 8)
    assert requests[0].prefix_id is None and requests[0].prefix_len == 0


def test_load_csv(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("timestamp, prompt_tokens ,output_tokens,prefix_id,prefix_len\n1.5,100,20,,\n2.0,50,1,a,10\n")
    requests = load_trace(path)
    assert [(r.arrival_s, r.input_tokens, r.output_tokens, r.prefix_id) for r in requests] == [
        (1.5, 100, 20, None), (2.0, 50, 1, "a"),
    ]  # fmt: skip


JSONL_CASES = [
    ('{"arrival_s": 0, "input_tokens": 5, "output_tokens": 1}\n{"arrival_s": 1, "output_tokens": 1}', 2, "missing"),
    ('{"arrival_s": 0, "input_tokens": 5, "output_tokens": 1}\n{"arrival_s": 1, "input_tokens": 5', 2, "malformed"),
    ('{"arrival_s": "soon", "input_tokens": 5, "output_tokens": 1}', 1, "not a number"),
    ('{"arrival_s": 0, "input_tokens": 0, "output_tokens": 1}', 1, ">= 1"),
    ('{"arrival_s": 0, "input_tokens": 5, "output_tokens": -3}', 1, ">= 1"),
    ('{"arrival_s": 0, "input_tokens": 5.5, "output_tokens": 3}', 1, "whole"),
    ('{"arrival_s": -1, "input_tokens": 5, "output_tokens": 1}', 1, "negative"),
    ('\n\n{"arrival_s": 2, "input_tokens": 5, "output_tokens": 1}\n{"timestamp": 1, "input_len": 5, "output_len": 1}',
     4, "before"),
    ("[1, 2, 3]", 1, "JSON object"),
    ('{"arrival_s": 0, "input_tokens": 5, "output_tokens": 1, "prefix_id": "x"}', 1, "prefix_len"),
    ('{"arrival_s": 0, "input_tokens": 5, "output_tokens": 1, "prefix_id": "x", "prefix_len": 9}', 1, "exceeds"),
    ('{"arrival_s": 0, "input_tokens": 5, "output_tokens": 1, "prefix_len": 3}', 1, "prefix_id"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "line", "fragment"), JSONL_CASES)
def test_bad_jsonl_trace_names_the_line(tmp_path, text, line, fragment):
    path = tmp_path / "bad.jsonl"
    path.write_text(text)
    with pytest.raises(FathomInputError) as excinfo:
        load_trace(path)
    message = _one_line(excinfo)
    assert str(path) in message and f"line {line}:" in message and fragment in message


CSV_CASES = [
    ("arrival_s,input_tokens\n0,5\n", 2, "missing field output_tokens"),
    ("arrival_s,input_tokens,output_tokens\n0,5,1\n1,,1\n", 3, "missing field input_tokens"),
    ("arrival_s,input_tokens,output_tokens\n0,5,1\n1,five,1\n", 3, "not a number"),
    ("arrival_s,input_tokens,output_tokens\n0,5,1\n1,5,0\n", 3, ">= 1"),
    ("arrival_s,input_tokens,output_tokens\n-0.5,5,1\n", 2, "negative"),
    ("arrival_s,input_tokens,output_tokens\n3,5,1\n\n2,5,1\n", 4, "sort"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "line", "fragment"), CSV_CASES)
def test_bad_csv_trace_names_the_line(tmp_path, text, line, fragment):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(FathomInputError) as excinfo:
        load_trace(path)
    message = _one_line(excinfo)
    assert f"line {line}:" in message and fragment in message


@pytest.mark.parametrize(
    ("name", "text"), [("e.jsonl", ""), ("e.jsonl", "\n\n"), ("e.csv", "arrival_s,input_tokens\n")]
)
def test_empty_trace(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(FathomInputError, match="empty trace"):
        load_trace(path)


def test_missing_trace_file(tmp_path):
    with pytest.raises(FathomInputError, match="no such file"):
        load_trace(tmp_path / "nope.jsonl")
