"""What the vLLM and SGLang command lines share: the model name on the command line and dtype words."""

from __future__ import annotations

from fathom.errors import FathomInputError
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


# Quantisation methods both vLLM and SGLang name with --quantization, as fathom's weight dtypes.
FROM_QUANT = {"fp8": "fp8", "awq": "int4", "awq_marlin": "int4", "gptq": "int4", "gptq_marlin": "int4"}


def read_weights(o, source: str, warnings: list[str]) -> tuple[str, str]:
    """``(model dtype, weight dtype)`` from ``--dtype`` and ``--quantization`` (vLLM and SGLang spell them alike)."""
    dtype = FROM_TORCH_DTYPE.get(o.text("--dtype", default="auto"), "bf16")
    quant = o.text("--quantization", "-q")
    if not quant:
        return dtype, dtype
    if quant not in FROM_QUANT:
        raise FathomInputError(f"{source}: --quantization {quant!r}: fathom knows {', '.join(FROM_QUANT)}")
    if quant.startswith("gptq"):
        warnings.append("weight_dtype: GPTQ's bit width is in the checkpoint; read as 4-bit")
    return dtype, FROM_QUANT[quant]
