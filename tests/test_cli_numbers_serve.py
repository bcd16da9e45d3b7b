"""`fathom serve` with absurd numbers: length distributions and the arrival rate.

Distribution parameters must be finite and within ``MAX_LENGTH_TOKENS``; draws are clipped to [1, that] before
they become integers, so no draw overflows int64. Errors are one line naming the flag, exit code 2.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from fathom.cli.app import run
from fathom.errors import FathomInputError
from fathom.serving.lengths import (
    MAX_LENGTH_TOKENS,
    LognormalLength,
    NormalLength,
    parse_length_dist,
)

SERVE = ["serve", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--num-requests", "20"]


def _fails(capsys, argv: list[str], *needles: str) -> str:
    assert run(argv) == 2
    captured = capsys.readouterr()
    line = captured.err.strip()
    assert captured.out == ""
    assert "\n" not in line and "Traceback" not in line and line.startswith("error: ")
    for needle in needles:
        assert needle in line, line
    return line


@pytest.mark.parametrize(
    ("flag", "spec", "needle"),
    [
        ("--input-dist", "uniform:low=1,high=100000000000000000000", f"high <= {MAX_LENGTH_TOKENS}"),
        ("--input-dist", "normal:mean=100,std=1e308", f"both <= {MAX_LENGTH_TOKENS}"),
        ("--input-dist", "normal:mean=100,std=1e10", f"both <= {MAX_LENGTH_TOKENS}"),
        ("--input-dist", "normal:mean=1e12,std=1", f"both <= {MAX_LENGTH_TOKENS}"),
        ("--output-dist", "lognormal:mean=1e20,sigma=1", f"mean >= 1 and <= {MAX_LENGTH_TOKENS}"),
        ("--output-dist", "lognormal:mean=100,sigma=1e200", "sigma >= 0 and <= 10"),
        ("--output-dist", "fixed:100000000000000000000", f"<= {MAX_LENGTH_TOKENS} tokens"),
        ("--input-dist", "normal:mean=100,std=inf", "must be finite"),
        ("--input-len", "100000000000000000000", f"<= {MAX_LENGTH_TOKENS} tokens"),
        ("--output-len", "100000000000000000000", f"<= {MAX_LENGTH_TOKENS} tokens"),
    ],
)
def test_length_parameters_out_of_range_name_the_flag(capsys, flag, spec, needle):
    line = _fails(capsys, SERVE + ["--rate", "4", flag, spec, "--json"], needle)
    assert line.startswith(f"error: {flag} (")


def test_empirical_lengths_are_bounded(capsys, tmp_path):
    path = tmp_path / "lengths.txt"
    path.write_text("100\n100000000000000000000\n")
    _fails(capsys, SERVE + ["--rate", "4", "--input-dist", f"empirical:{path}"], "--input-dist", "line 2",
           f"1..{MAX_LENGTH_TOKENS}")  # fmt: skip


def test_draws_are_clipped_before_integer_conversion():
    rng = np.random.default_rng(0)
    wide = NormalLength(float(MAX_LENGTH_TOKENS), float(MAX_LENGTH_TOKENS)).sample(rng, 10_000)
    heavy = LognormalLength(float(MAX_LENGTH_TOKENS), 5.0).sample(rng, 10_000)
    for draws in (wide, heavy):
        assert draws.dtype == np.int64
        assert draws.min() >= 1
        assert draws.max() == MAX_LENGTH_TOKENS  # the tail is clipped, not wrapped around to negative values


def test_largest_allowed_parameters_parse_and_sample():
    rng = np.random.default_rng(1)
    top = MAX_LENGTH_TOKENS
    for spec in (f"fixed:{top}", f"uniform:low=1,high={top}", f"normal:mean={top},std={top}",
                 "lognormal:mean=1e9,sigma=10"):  # fmt: skip
        draws = parse_length_dist(spec, "--input-dist").sample(rng, 1000)
        assert 1 <= draws.min() and draws.max() <= MAX_LENGTH_TOKENS
    with pytest.raises(FathomInputError, match="^input length: uniform needs"):
        parse_length_dist("uniform:low=1,high=1e20", "input length")


def test_huge_but_allowed_lengths_run(capsys):
    # lengths past the model's context are rejected requests, not a crash
    assert run(SERVE + ["--rate", "4", "--input-dist", "normal:mean=100,std=1e9", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["completed"] + data["rejected"] == 20


@pytest.mark.parametrize("rate", ["1e400", "inf"])
def test_rate_must_be_finite(capsys, rate):
    _fails(capsys, SERVE + ["--rate", rate], "--rate", "finite")


def test_infinite_prices_and_slos_are_refused(capsys):
    from fathom.cli.app import run

    base = ["serve", "--model", "llama-3.1-8b", "--gpu", "h100-sxm", "--rate", "4", "--num-requests", "20",
            "--input-len", "100", "--output-len", "10", "--json"]  # fmt: skip
    for flag in ("--price-per-gpu-hour", "--slo-ttft", "--slo-tpot"):
        assert run([*base, flag, "1e400"]) == 2
        assert f"{flag} inf is out of range" in capsys.readouterr().err
