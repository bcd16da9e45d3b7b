"""What the vLLM and SGLang command lines share: the model name on the command line and dtype words."""

from __future__ import annotations

from fathom.export.base import ServingSetup

TORCH_DTYPE = {"bf16": "bfloat16", "fp16": "float16"}
FROM_TORCH_DTYPE = {"bfloat16": "bf16", "float16": "fp16", "half": "fp16", "auto": "bf16"}


def model_dtype(setup: ServingSetup) -> str:
    """The 16-bit activation dtype (``--dtype``): the weights' when 16-bit, else the KV cache's, else bf16."""
    p = setup.plan
    if p.weight_dtype in TORCH_DTYPE:
        return TORCH_DTYPE[p.weight_dtype]
    return TORCH_DTYPE.get(p.kv_dtype, "bfloat16")


def common_notes(setup: ServingSetup, engine: str) -> dict[str, str]:
    notes: dict[str, str] = {}
    p = setup.plan
    if p.kv_free_fraction is not None:
        notes["kv_free_fraction"] = (
            f"{engine} sizes the KV cache from a share of total memory; wrote memory_utilization"
        )
    if p.weight_dtype == "int8":
        notes["weight_dtype"] = (
            f"{engine} takes weight-only INT8 from a pre-quantized checkpoint (e.g. GPTQ 8-bit), not a flag; "
            "wrote --quantization gptq"
        )
    if setup.preemption == "swap":
        notes["preemption"] = f"{engine} recomputes preempted requests; it has no swap-to-host preemption"
    if setup.scheduler in ("static", "decode-priority"):
        notes["scheduler"] = f"{engine} has no {setup.scheduler} scheduler; wrote continuous batching"
    return notes
