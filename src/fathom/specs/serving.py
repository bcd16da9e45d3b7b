"""A serving deployment of one replica: parallelism, numerics and engine limits."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

WeightDtype = Literal["bf16", "fp16", "fp8", "int8", "int4"]
KVDtype = Literal["bf16", "fp16", "fp8"]
WEIGHT_DTYPES: tuple[str, ...] = ("bf16", "fp16", "fp8", "int8", "int4")
KV_DTYPES: tuple[str, ...] = ("bf16", "fp16", "fp8")


class ServingPlan(BaseModel):
    """How one replica runs a model.

    ``weight_dtype``: ``fp8`` multiplies in FP8 (W8A8); ``int8``/``int4`` are weight-only (W8A16/W4A16, as in
    MARLIN and AWQ): 16-bit math on dequantised weights, fewer bytes read. ``max_batch`` caps concurrent
    sequences, ``max_batch_tokens`` the tokens of one iteration (vLLM's max_num_seqs / max_num_batched_tokens).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    tp: PositiveInt = 1
    pp: PositiveInt = 1
    ep: PositiveInt = 1
    weight_dtype: WeightDtype = "bf16"
    kv_dtype: KVDtype = "bf16"
    attention: Literal["flash3", "flash2", "flash1"] = "flash2"
    cuda_graphs: bool = True
    max_batch: PositiveInt = 256
    max_batch_tokens: PositiveInt = 8192
    block_size: PositiveInt = 16
    memory_utilization: float = Field(0.9, gt=0, le=1)
    # TensorRT-LLM sizes the KV cache as a fraction of the memory left free after loading the model
    # (kv_cache_free_gpu_mem_fraction); when set, this replaces memory_utilization's share-of-total rule (vLLM).
    kv_free_fraction: float | None = Field(None, gt=0, le=1)

    @property
    def num_gpus(self) -> int:
        return self.tp * self.pp
