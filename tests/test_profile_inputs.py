"""``fathom profile``'s arguments are checked before a minute of benchmarks starts, with one-line errors naming the
flag, and the profile is written whole or not at all."""

from __future__ import annotations

import os

import pytest

from fathom.cli.app import run
from fathom.errors import FathomInputError

pytest.importorskip("torch")


@pytest.fixture
def no_benchmarks(monkeypatch):
    """Any benchmark starting fails the test: every check below must come first."""
    import fathom.profiling.runner as runner

    def started(*args, **kwargs):
        raise AssertionError("a benchmark ran before the arguments were checked")

    monkeypatch.setattr(runner, "bench_overhead", started)


def _profile(*args: str) -> list[str]:
    return ["profile", "--tiny", "--threads", "1", "--clock", "cpu", "--no-collectives", *args]


@pytest.mark.parametrize(
    ("out", "says"),
    [
        ("/proc/nope/p.yaml", "--out: directory /proc/nope does not exist"),
        ("{tmp}/", "is a directory"),
        ("{tmp}", "is a directory"),
        ("{tmp}/not-yet/", "is a directory"),  # a trailing slash names a directory even before it exists
        ("{tmp}/node.txt", "must end in .yaml or .yml"),
    ],
)
def test_a_bad_out_is_refused_before_any_benchmark(out, says, tmp_path, no_benchmarks, capsys) -> None:
    assert run(_profile("--out", out.format(tmp=tmp_path))) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1 and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_out_directory_is_refused(tmp_path, no_benchmarks, monkeypatch, capsys) -> None:
    """Writability is tried by creating a temporary file beside the profile (root ignores permission bits)."""
    import tempfile

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    assert run(_profile("--out", str(tmp_path / "node.yaml"))) == 2
    assert f"--out: cannot create a file in {tmp_path} (Permission denied)" in capsys.readouterr().err


def test_an_unknown_base_is_refused_with_close_matches(tmp_path, no_benchmarks, capsys) -> None:
    assert run(_profile("--out", str(tmp_path / "node.yaml"), "--base", "h100")) == 2
    err = capsys.readouterr().err
    assert "--base: unknown name 'h100'; did you mean 'h100-pcie', 'h100-sxm'" in err
    assert run(_profile("--out", str(tmp_path / "node.yaml"), "--base", str(tmp_path / "missing.yaml"))) == 2
    assert "--base: gpu file" in capsys.readouterr().err and list(tmp_path.iterdir()) == []


def test_a_gpu_without_base_is_refused_before_any_benchmark(tmp_path, no_benchmarks, monkeypatch, capsys) -> None:
    import dataclasses

    import fathom.profiling.runner as runner

    real = runner.describe
    monkeypatch.setattr(runner, "describe", lambda t: dataclasses.replace(real(t), accelerator="NVIDIA H100"))
    assert run(["profile", "--tiny", "--out", str(tmp_path / "gpu.yaml")]) == 2
    assert "--base" in capsys.readouterr().err


def test_a_failed_write_leaves_no_file(tmp_path, monkeypatch) -> None:
    """The YAML goes to a temporary file renamed over ``--out``: a failure leaves neither a partial file nor it."""
    from fathom.reports.output import write_atomic  # the profile's writer, shared with every output

    out = tmp_path / "node.yaml"
    write_atomic(out, "name: a\n", option="--out")
    umask = os.umask(0)
    os.umask(umask)
    assert out.read_text() == "name: a\n" and out.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600

    def full(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(FathomInputError, match="No space left on device"):
        write_atomic(out, "name: b\n", option="--out")
    assert [p.name for p in tmp_path.iterdir()] == ["node.yaml"] and out.read_text() == "name: a\n"


def test_without_torch_each_command_names_itself_and_the_extra(tmp_path, monkeypatch, capsys) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    assert run(["check", "train", "--model", "tiny-llama", "--gpu", "node.yaml"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: check: PyTorch is not installed") and "pip install 'fathom[profile]'" in err
    assert run(["profile", "--out", str(tmp_path / "node.yaml")]) == 2
    assert capsys.readouterr().err.startswith("error: profile: PyTorch is not installed")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--base", "h100-sxm"), "--base: h100-sxm is a GPU's datasheet, and this machine has no CUDA GPU"),
        (("--quick",), "--tiny/--quick: give one grid"),
        (("--threads", "4096"), "--threads 4096: this machine has"),
    ],
)
def test_contradictory_profile_flags_are_refused(args, says, tmp_path, no_benchmarks, capsys) -> None:
    argv = _profile("--out", str(tmp_path / "node.yaml"), *args)
    if "--threads" in args:  # _profile gives --threads 1 first; typer keeps the last
        argv = ["profile", "--tiny", "--clock", "wall", "--no-collectives", "--out", str(tmp_path / "n.yaml"), *args]
    assert run(argv) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1 and list(tmp_path.iterdir()) == []
