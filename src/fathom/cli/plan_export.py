"""``fathom plan ... --export ENGINE``: the winning plan as the launch configuration of the engine a user runs.

The configuration goes to stdout (so ``> launch.sh`` captures it alone); every plan field the engine cannot
express is named on stderr, never dropped silently.
"""

from __future__ import annotations

import sys

from fathom.catalog.models import get_model
from fathom.errors import FathomInputError
from fathom.export.base import ServingSetup
from fathom.export.registry import engine_names, export_serving_plan, export_training_plan
from fathom.search.serving_result import Deployment
from fathom.search.training_report import RankedPlan
from fathom.specs.plan import TrainingPlan
from fathom.specs.serving import ServingPlan


def check_engine(engine: str, kind: str) -> None:
    """Fail before the search when ``--export`` names no engine of this kind."""
    names = engine_names(kind)
    if engine not in names:
        raise FathomInputError(f"--export: unknown {kind} engine {engine!r} (choices: {', '.join(names)})")


def _emit(text: str, warnings: list[str]) -> None:
    for line in warnings:
        print(f"warning: {line}", file=sys.stderr)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")


def export_best_training(best: RankedPlan | None, model: str, engine: str, gpus_per_node: int) -> None:
    if best is None:
        raise FathomInputError("--export: no feasible plan to export")
    spec = get_model(model)
    plan = TrainingPlan(**best.plan)
    result = export_training_plan(plan, spec, engine, model_name=model, gpus_per_node=gpus_per_node)
    _emit(result.text, result.warnings)


def export_best_deployment(best: Deployment | None, model: str, engine: str) -> None:
    if best is None:
        raise FathomInputError("--export: no deployment to export")
    plan = ServingPlan(tp=best.tp, pp=best.pp, weight_dtype=best.precision, kv_dtype=best.kv_dtype,
                       max_batch=best.max_batch, max_batch_tokens=best.max_batch_tokens)  # fmt: skip
    result = export_serving_plan(ServingSetup(plan=plan, scheduler=best.scheduler), model, engine, get_model(model))
    warnings = list(result.warnings)
    if best.mode == "disaggregated":
        warnings.append(
            f"mode: disaggregated ({best.prefill_replicas} prefill + {best.decode_replicas} decode replicas); "
            "the command launches one replica — the prefill/decode split is set up outside the engine"
        )
    _emit(result.text, warnings)
