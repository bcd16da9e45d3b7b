"""What every engine exporter and importer shares: results, the serving setup, and the lost-field check.

A plan field an engine cannot express is never dropped silently: after writing, the exporter reads its own output
back with the engine's importer and names every field that did not survive (``lost_field_warnings``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from pydantic import BaseModel, ValidationError

from fathom.errors import FathomInputError
from fathom.specs.model import ModelSpec
from fathom.specs.plan import TrainingPlan
from fathom.specs.serving import ServingPlan

SERVING_SCHEDULERS: tuple[str, ...] = ("static", "continuous", "chunked-prefill", "decode-priority")
PREEMPTIONS: tuple[str, ...] = ("recompute", "swap")


class ExportResult(NamedTuple):
    """The engine's file or command line, and one ``field: reason`` line per plan field it could not express."""

    text: str
    warnings: list[str]


@dataclass(frozen=True)
class ServingSetup:
    """A replica's plan plus the engine choices fathom's serving simulator takes beside it."""

    plan: ServingPlan
    scheduler: str = "continuous"
    prefix_caching: bool = False
    preemption: str = "recompute"


@dataclass
class ImportedTraining:
    plan: TrainingPlan
    model: str | None = None  # a fathom model name (or the file's own name for the model) when the file names one
    model_spec: ModelSpec | None = None  # the shape, when the file carries it (Megatron-LM arguments do)
    warnings: list[str] = field(default_factory=list)


@dataclass
class ImportedServing:
    setup: ServingSetup
    model: str | None = None
    warnings: list[str] = field(default_factory=list)


def build_training_plan(source: str, keys: Mapping[str, str], **fields) -> TrainingPlan:
    """``TrainingPlan(**fields)`` for an importer: a value the plan rejects becomes one ``FathomInputError`` line
    naming the engine's own key or flag for the field (``keys``: plan field -> engine key), never a traceback."""
    try:
        return TrainingPlan(**fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = err.get("loc") or ()
        if loc:  # a field's own check: name the engine key and the value it gave
            name = str(loc[0])
            message = f"{keys.get(name, name)} got {err.get('input')!r}: {err['msg']}"
        else:  # the plan's range and product checks name fathom's own flags: swap in the engine's keys
            message = err["msg"]
            for name, key in keys.items():
                message = re.sub(re.escape("--" + name.replace("_", "-")) + r"(?![\w-])", key, message)
        raise FathomInputError(f"{source}: {message}") from None


def canonical_training(plan: TrainingPlan, spec: ModelSpec | None) -> TrainingPlan:
    """The plan with fields that have no effect set to their defaults: sequence parallelism and TP overlap need
    TP > 1, MoE settings need experts, ZeRO needs more than one data-parallel rank (unless it offloads) and its
    gather settings their stage, pipeline settings a pipeline, adapter settings adapters. Two plans equal here
    train identically."""
    defaults = {k: f.default for k, f in TrainingPlan.model_fields.items()}
    update: dict = {}

    def reset(*fields: str) -> None:
        update.update({k: defaults[k] for k in fields})

    zero = 0 if plan.dp == 1 and plan.offload == "none" else plan.zero
    update["zero"] = zero
    if plan.tp == 1:
        update["sequence_parallel"] = False
        reset("overlap_tp_comm", "async_tp_allreduce")
    if spec is not None and not spec.is_moe:
        update.update(moe_dispatcher="alltoall", overlap_moe_comm=False)
        reset("moe_routing", "moe_router_fusion")
    if zero != 3:
        reset("zero3_gather")
    if zero != 2:
        reset("zero2_comm")
    if zero == 0:
        reset("overlap_param_gather")
    if plan.pp == 1:
        reset("pipeline_engine", "overlap_p2p_comm", "balance_pipeline_ends")
    if plan.finetune == "none":
        reset("lora_rank", "lora_targets")
    if plan.optimizer not in ("galore", "galore-8bit"):
        reset("galore_rank")
    if plan.precision != "fp8":
        reset("fp8_saved_inputs")
    if plan.precision == "fp32":
        reset("master_weights")
    return plan.model_copy(update=update)


def _diff(original: BaseModel | ServingSetup, back: BaseModel | ServingSetup) -> list[tuple[str, object, object]]:
    if isinstance(original, ServingSetup):
        pairs = [(f"{k}", getattr(original.plan, k), getattr(back.plan, k)) for k in type(original.plan).model_fields]
        pairs += [(k, getattr(original, k), getattr(back, k)) for k in ("scheduler", "prefix_caching", "preemption")]
    else:
        pairs = [(k, getattr(original, k), getattr(back, k)) for k in type(original).model_fields]
    return [(k, a, b) for k, a, b in pairs if a != b]


def lost_field_warnings(engine: str, original, back, notes: dict[str, str]) -> list[str]:
    """``field: reason`` for every note the exporter made, and for every field whose value did not survive the
    round trip (with the exporter's reason when it gave one, else what the engine reads back)."""
    warnings = {k: f"{k}: {v}" for k, v in notes.items()}
    for name, wanted, got in _diff(original, back):
        if name not in warnings:
            warnings[name] = f"{name}: {engine} cannot express {wanted!r}; the file reads back as {got!r}"
    return list(warnings.values())
