"""Engines by name. An engine is one module in ``fathom.export.engines`` that defines ``ENGINE``; adding a file
adds an engine, nothing else needs to know about it."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from fathom.errors import unknown_name_error
from fathom.export.base import (
    ExportResult,
    ImportedServing,
    ImportedTraining,
    ServingSetup,
    canonical_training,
    lost_field_warnings,
)
from fathom.export.model_names import serving_model
from fathom.specs.model import ModelSpec
from fathom.specs.plan import TrainingPlan


@dataclass(frozen=True)
class TrainingEngine:
    name: str
    title: str
    doc_url: str
    # write(plan, spec, model_name=, gpus_per_node=) -> (text, {field: reason})
    write: Callable[..., tuple[str, dict[str, str]]]
    # read(text, spec=, num_gpus=) -> ImportedTraining
    read: Callable[..., ImportedTraining]
    kind: str = "training"


@dataclass(frozen=True)
class ServingEngine:
    name: str
    title: str
    doc_url: str
    write: Callable[..., tuple[str, dict[str, str]]]  # write(setup, model_name, spec) -> (text, notes)
    read: Callable[[str], ImportedServing]
    kind: str = "serving"


@cache
def engines() -> dict[str, TrainingEngine | ServingEngine]:
    from fathom.export import engines as package

    found = {}
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        engine = getattr(module, "ENGINE", None)
        if engine is not None:
            found[engine.name] = engine
    return dict(sorted(found.items()))


def engine_names(kind: str | None = None) -> list[str]:
    return [n for n, e in engines().items() if kind is None or e.kind == kind]


def get_engine(name: str, kind: str | None = None) -> TrainingEngine | ServingEngine:
    choices = engine_names(kind)
    if name not in choices:
        raise unknown_name_error(f"--engine ({kind or 'any'})", name, choices)
    return engines()[name]


def export_training_plan(
    plan: TrainingPlan, model_spec: ModelSpec, engine: str, *, model_name: str | None = None, gpus_per_node: int = 8
) -> ExportResult:
    """The engine's launch file for ``plan`` and the fields it could not express (``field: reason`` lines)."""
    eng = get_engine(engine, "training")
    text, notes = eng.write(plan, model_spec, model_name=model_name or model_spec.name, gpus_per_node=gpus_per_node)
    back = eng.read(text, spec=model_spec, num_gpus=plan.num_gpus)
    warnings = lost_field_warnings(
        eng.title, canonical_training(plan, model_spec), canonical_training(back.plan, model_spec), notes
    )
    return ExportResult(text, warnings)


def export_serving_plan(
    setup: ServingSetup, model_name: str, engine: str, model_spec: ModelSpec | None = None
) -> ExportResult:
    """The engine's launch command for one replica, and the fields it could not express. A fathom preset is written
    as its Hugging Face repository (``fathom.export.model_names.HF_REPOS``); other names are written as given."""
    eng = get_engine(engine, "serving")
    model_ref, model_note = serving_model(model_name)
    text, notes = eng.write(setup, model_ref, model_spec)
    if model_note:
        notes = {"model": model_note, **notes}
    back = eng.read(text)
    return ExportResult(text, lost_field_warnings(eng.title, setup, back.setup, notes))


def import_training(
    engine: str, text: str, *, spec: ModelSpec | None = None, num_gpus: int | None = None
) -> ImportedTraining:
    return get_engine(engine, "training").read(text, spec=spec, num_gpus=num_gpus)


def import_serving(engine: str, text: str) -> ImportedServing:
    return get_engine(engine, "serving").read(text)
