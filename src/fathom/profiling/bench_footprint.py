"""The memory a training process holds besides its tensors, measured: a CPU's "CUDA context".

A minimal model (one layer, width 16) takes one warm-up and one measured training step in a fresh worker
process, exactly as ``fathom check train`` measures peak memory (``check_worker``: resident high-water mark over
the step minus the resident memory before the model was built). What remains is the framework's own code and
data pages that a step touches (kernels, thread pools, autograd), which every run on this machine pays once.
It becomes the profile's ``runtime_reserved_gib``.
"""

from __future__ import annotations


def bench_runtime_memory(threads: int, clock: str, tick) -> list[dict]:
    from fathom.catalog.models import get_model
    from fathom.profiling.check import run_workers

    spec = get_model("tiny-llama").model_copy(
        update={
            "num_layers": 1,
            "hidden_size": 16,
            "num_heads": 2,
            "num_kv_heads": 1,
            "head_dim": 8,
            "ffn_size": 16,
            "vocab_size": 32,
        }
    )
    args = {"job": "train", "spec": spec.model_dump(), "micro_batch": 1, "seq_len": 8, "steps": 1, "warmup": 1}
    meas = run_workers({**args, "threads": threads, "clock": clock, "memory": True}, 1, 600.0, exact_memory=True)
    tick()
    peak = meas["peak_memory_bytes"]
    return [{"op": "training_process", "bytes": peak}] if peak else []
