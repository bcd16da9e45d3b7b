"""The L40S server's collective efficiency is fitted on the serving rows that depend on it (TP 2-8 on L40S).

No nccl-tests figure for an L40S server was found, so ``l40s-node``'s ``intra_node_efficiency`` is the 0.01-grid
value with the least mean absolute error over those rows (catalog file ``l40s-node.yaml`` says so). These tests
keep it the optimum, and keep the fit honest: single-GPU rows, which no collective touches, do not move.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import yaml

from fathom.catalog.hardware import get_system
from fathom.validation.serving import _metric, _simulate, load_serving_rows


def _rows(multi_gpu: bool) -> list[dict]:
    rows = [r for r in load_serving_rows() if r["gpu"] == "l40s" and r["complete"] == "yes"]
    return [r for r in rows if (int(r["tp"] or 1) > 1) == multi_gpu]


@functools.cache
def _system_file(tmp_root: str, efficiency: float) -> str:
    data = get_system("l40s-node").model_dump(exclude_none=True)
    data["intra_node_efficiency"] = round(efficiency, 2)
    path = f"{tmp_root}/l40s-node-{efficiency:.2f}.yaml"
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(data, f)
    return path


def _mean_abs_error(rows: list[dict], system: str | None = None) -> float:
    errors = []
    for row in rows:
        row = {**row, "system": system or row["system"]}
        errors.append(abs(_metric(_simulate(row), row) / float(row["value"]) - 1))
    return 100 * float(np.mean(errors))


@pytest.fixture(scope="module")
def tmp_root(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("l40s"))


def test_intra_node_efficiency_is_the_fitted_optimum(tmp_root):
    rows = _rows(multi_gpu=True)
    assert len(rows) == 48
    stored = get_system("l40s-node").intra_node_efficiency
    here = _mean_abs_error(rows)
    for neighbour in (stored - 0.01, stored + 0.01):
        assert here <= _mean_abs_error(rows, _system_file(tmp_root, neighbour)) + 1e-6
    assert here < 10.0  # 26.2% with the default 0.8


def test_single_gpu_rows_do_not_depend_on_it(tmp_root):
    rows = _rows(multi_gpu=False)[:6]
    assert _mean_abs_error(rows) == pytest.approx(_mean_abs_error(rows, _system_file(tmp_root, 0.8)), abs=1e-9)
