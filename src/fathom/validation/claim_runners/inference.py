"""Inference claims priced on the kernel and step models directly (no simulator): kernel speedups, decode drops."""

from __future__ import annotations

import numpy as np

from fathom.catalog.hardware import resolve_cluster
from fathom.catalog.models import get_model
from fathom.costmodel.kernels import linear_s
from fathom.inference.memory import WEIGHT_BYTES
from fathom.inference.step_model import InferenceStepModel
from fathom.specs.serving import ServingPlan
from fathom.validation.claim_runners.common import Pair


def kernel_ratio(fig: dict) -> tuple[list[Pair], str]:
    """Time of one FP16 linear layer over the same layer with int4 weights (16-bit math), per batch size: the
    baseline value is the FP16 time, the technique value the int4 time inverted into a speed."""
    device = resolve_cluster(fig["gpu"], 1).device
    n, k = fig["shape"]["n"], fig["shape"]["k"]
    pairs = []
    for b in fig["batches"]:
        fp16 = float(linear_s(device, "fp16", b, n, k))
        int4 = float(linear_s(device, "fp16", b, n, k, weight_bytes=WEIGHT_BYTES["int4"]))
        pairs.append((1.0 / fp16, 1.0 / int4))  # speeds: technique / baseline is the speedup
    return pairs, f"{n} x {k} layer on {fig['gpu']}"


def prefix_decode_drop(fig: dict) -> tuple[list[Pair], str]:
    """Decode throughput of a batch sharing one prefix, at the shorter (baseline) and longer (technique) prefix:
    ``batch`` sequences each generate ``output_tokens`` tokens; the step model prices every decode step."""
    short, long_ = fig["prefixes"]
    plan = ServingPlan(tp=fig["tp"], max_model_len=long_ + fig["output_tokens"],
                       shared_prefix_attention=fig["shared_prefix_attention"])  # fmt: skip
    model = InferenceStepModel(get_model(fig["model"]), resolve_cluster(fig["gpu"], fig["tp"]), plan)
    batch, steps = fig["batch"], fig["output_tokens"]

    def throughput(prefix: int) -> float:
        seconds = sum(model.step_time_s([], [], np.full(batch, float(prefix + g)), shared_prefix=[(prefix, batch)])
                      for g in range(1, steps + 1))  # fmt: skip
        return batch * steps / seconds

    return [(throughput(short), throughput(long_))], f"batch {batch}, {steps} tokens, TP{fig['tp']} {fig['gpu']}"


RUNNERS = {
    "kernel_ratio": kernel_ratio,
    "prefix_decode_drop": prefix_decode_drop,
}
