"""The catalog listings of the API: names with the figures a form needs to offer sensible choices."""

from __future__ import annotations

from functools import cache

from fathom.catalog.hardware import get_device, get_system, list_gpus, list_systems
from fathom.catalog.models import get_model, list_models


@cache
def models() -> list[dict]:
    out = []
    for name in list_models():
        m = get_model(name)
        details = {
            "family": m.family,
            "params": m.num_params,
            "active_params": m.num_active_params,
            "layers": m.num_layers,
            "hidden_size": m.hidden_size,
            "heads": m.num_heads,
            "kv_heads": m.num_kv_heads,
            "moe": m.is_moe,
            "source": m.source,
        }
        out.append({"name": name, "details": details})
    return out


@cache
def gpus() -> list[dict]:
    return [{"name": n, "details": get_device(n).model_dump(mode="json")} for n in list_gpus()]


@cache
def systems() -> list[dict]:
    return [{"name": n, "details": get_system(n).model_dump(mode="json")} for n in list_systems()]
