"""The validation commands run end to end and keep their golden figures (regressions fail here)."""

from __future__ import annotations

import json

from fathom.cli.app import run
from fathom.validation.serving import validate_serving
from fathom.validation.training import validate_training


def test_training_validation_runs_and_korthikanti_memory_stays_exact():
    results = validate_training()
    memory = [r for r in results if r.error_pct is not None and r.row_id.startswith("korthikanti")
              and r.metric.endswith("memory_gib")]  # fmt: skip
    assert len(memory) == 24 and max(abs(r.error_pct) for r in memory) < 10
    skipped = [r for r in results if r.error_pct is None]
    assert all(r.skipped for r in skipped)  # every excluded row says why


def test_training_validation_json(capsys):
    assert run(["validate", "training", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["summary"]["time | all sources"]["rows"] > 300


def test_serving_validation_runs():
    checks = validate_serving(limit=3)
    compared = [c for c in checks if c.error_pct is not None]
    assert compared and all(abs(c.error_pct) < 50 for c in compared)
