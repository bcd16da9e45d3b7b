"""Choice enums shared by commands (typer renders them as click choices: bad values list the valid ones)."""

from __future__ import annotations

from enum import Enum


class ScheduleChoice(str, Enum):
    one_f_one_b = "1f1b"
    interleaved = "interleaved"
    zero_bubble = "zero-bubble"


class RecomputeChoice(str, Enum):
    none = "none"
    selective = "selective"
    full = "full"


class PrecisionChoice(str, Enum):
    bf16 = "bf16"
    fp16 = "fp16"
    fp8 = "fp8"
    fp32 = "fp32"


class OptimizerChoice(str, Enum):
    adamw = "adamw"
    adam_8bit = "adam-8bit"
    adafactor = "adafactor"
    sgd = "sgd"


class OffloadChoice(str, Enum):
    none = "none"
    cpu = "cpu"
    nvme = "nvme"
