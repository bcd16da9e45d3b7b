"""How each kind of claimed figure is predicted: scenario pairs run through fathom's public estimators.

Every runner takes one figure entry of ``data/claims/*.yaml`` and returns ``(baseline, technique)`` values of the
figure's metric plus a short note; ``fathom.validation.claims`` turns the pairs into the claimed kind of figure
(ratio, gain, reduction, value). Nothing here knows a claim: all inputs come from the YAML entry, all physics from
the same estimators and defaults as ``fathom train`` and ``fathom serve``.

A new kind of figure joins by adding one module to this package with a module-level ``RUNNERS`` dict; the
registry below collects every module's runners.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable

from fathom.validation.claim_runners.common import Pair

Runner = Callable[[dict], tuple[list[Pair], str]]
MISSING_KINDS: tuple[str, ...] = ("missing_input", "missing_lever")


def _collect() -> dict[str, Runner]:
    runners: dict[str, Runner] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        for kind, fn in getattr(module, "RUNNERS", {}).items():
            if kind in runners:
                raise RuntimeError(f"claim runner kind {kind!r} registered twice")
            runners[kind] = fn
    return runners


RUNNERS: dict[str, Runner] = _collect()
