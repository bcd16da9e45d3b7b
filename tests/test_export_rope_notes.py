"""A Megatron export says when it cannot write the model's RoPE scaling, instead of dropping it silently."""

from __future__ import annotations

from fathom.catalog.models import get_model
from fathom.export.megatron_model import model_flags


def test_unwritable_rope_scaling_is_a_note():
    spec = get_model("llama-3.1-8b").model_copy(update={"rope_scaling": "yarn", "rope_scaling_factor": 4.0})
    flags, notes = model_flags(spec, 4096)
    assert "--use-rope-scaling" not in [name for name, _ in flags]
    assert "yarn RoPE scaling (factor 4) is not written" in notes["model.rope_scaling"]
    flags, notes = model_flags(get_model("llama-3.1-8b"), 4096)
    assert "--use-rope-scaling" in [name for name, _ in flags] and "model.rope_scaling" not in notes
