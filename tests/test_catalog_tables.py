"""``fathom models|gpus|systems``: names and numbers are never cut, sources shown where the terminal has room."""

from __future__ import annotations

import pytest

from fathom.catalog.hardware import list_gpus, list_systems
from fathom.catalog.models import list_models
from fathom.cli.app import run

NAMES = {"models": list_models, "gpus": list_gpus, "systems": list_systems}


@pytest.mark.parametrize("command", list(NAMES))
def test_an_80_column_terminal_gets_every_name_whole_and_the_sources_hint(command, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    assert run([command]) == 0
    out = capsys.readouterr().out
    assert "…" not in out and all(len(line) <= 80 for line in out.splitlines())
    assert all(name in out for name in NAMES[command]())
    assert "(sources: a terminal at least 120 columns wide, or --json)" in out


@pytest.mark.parametrize("command", list(NAMES))
def test_a_wide_terminal_shows_sources_and_no_sources_hides_them(command, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")
    assert run([command]) == 0
    wide = capsys.readouterr().out
    assert "source" in wide.splitlines()[2] and "(sources:" not in wide
    assert run([command, "--no-sources"]) == 0
    bare = capsys.readouterr().out
    assert "source" not in bare.splitlines()[2] and "(sources:" not in bare
