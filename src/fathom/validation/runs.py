"""Load the cited training-run tables (``data/*.csv``) into typed rows."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from importlib import resources

TRAINING_FILES = {"published": "training_runs.csv", "vtrain": "vtrain_a100_single_node.csv"}


@dataclass(frozen=True)
class RunRow:
    """One published measurement: a configuration, a metric and its measured value."""

    fields: dict[str, str]

    def __getitem__(self, key: str) -> str:
        return (self.fields.get(key) or "").strip()  # a row shorter than the header reads blank (csv gives None)

    def int(self, key: str) -> int | None:
        v = self[key]
        try:
            return int(float(v))
        except ValueError:
            return None

    def flag(self, key: str, default: bool = False) -> bool:
        v = self[key].lower()
        return default if v == "" else v in ("true", "yes", "1", "on")

    @property
    def complete(self) -> bool:
        return self["complete"].lower() == "yes"

    @property
    def value(self) -> float:
        return float(self["value"])


def load_runs(which: str = "published") -> list[RunRow]:
    name = TRAINING_FILES[which]
    text = resources.files("fathom.validation").joinpath("data", name).read_text(encoding="utf-8")
    return [RunRow(dict(r)) for r in csv.DictReader(text.splitlines())]
