"""Choice enums shared by commands (typer renders them as click choices: bad values list the valid ones)."""

from __future__ import annotations

from enum import StrEnum


class ScheduleChoice(StrEnum):
    one_f_one_b = "1f1b"
    interleaved = "interleaved"
    zero_bubble = "zero-bubble"


class RecomputeChoice(StrEnum):
    none = "none"
    selective = "selective"
    full = "full"


class PrecisionChoice(StrEnum):
    bf16 = "bf16"
    fp16 = "fp16"
    fp8 = "fp8"
    fp32 = "fp32"


class OptimizerChoice(StrEnum):
    adamw = "adamw"
    adam_8bit = "adam-8bit"
    adafactor = "adafactor"
    sgd = "sgd"


class OffloadChoice(StrEnum):
    none = "none"
    cpu = "cpu"
    nvme = "nvme"


class AttentionChoice(StrEnum):
    flash3 = "flash3"
    flash2 = "flash2"
    flash1 = "flash1"
    unfused = "unfused"
