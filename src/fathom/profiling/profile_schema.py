"""What ``fathom check`` reads from a profile's ``profile:`` section, typed: a hand-edited or truncated section is
a one-line error naming the field before any worker starts, not a KeyError after a run. Only the fields the check
uses are declared; the rest of the record (raw measurements of other families, fit quality) passes through."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

from fathom.specs.hardware import validate_or_explain


class _Loose(BaseModel):
    model_config = ConfigDict(extra="allow")


def _finite_positive(value: float) -> float:
    if not math.isfinite(value) or value <= 0:
        raise ValueError("must be a finite number > 0")
    return value


class ProfileMachine(_Loose):
    threads: StrictInt = Field(ge=1)
    cpu_model: str
    accelerator: str = "cpu"


class ReferenceSpeed(_Loose):
    speed: float

    _speed = field_validator("speed")(_finite_positive)


class GemmCase(_Loose):
    dtype: Literal["fp32", "bf16", "fp16", "fp8"]
    m: StrictInt = Field(ge=1)
    n: StrictInt = Field(ge=1)
    k: StrictInt = Field(ge=1)
    seconds: float

    _seconds = field_validator("seconds")(_finite_positive)


class FootprintCase(_Loose):
    op: str
    bytes: float

    _bytes = field_validator("bytes")(_finite_positive)


class ProfileMeasurements(_Loose):
    gemm: list[GemmCase] = []
    footprint: list[FootprintCase] = []


class ProfileSection(_Loose):
    machine: ProfileMachine
    clock: Literal["wall", "cpu"] = "wall"
    reference: dict[str, ReferenceSpeed] = {}
    measurements: ProfileMeasurements = ProfileMeasurements()


def check_profile_section(section: dict, where: str) -> None:
    """A one-line FathomInputError naming the first malformed field of a profile's ``profile:`` section."""
    validate_or_explain(ProfileSection, section, f"{where} profile")
