"""The memory a training or serving process holds besides its tensors, measured: a CPU's "CUDA context".

A minimal model takes one warm-up and one measured step (training) or repeat (serving: a prefill and its decode
steps) in a fresh worker process, exactly as ``fathom check train|serve`` measures peak memory (``check_worker``:
resident high-water mark minus the resident memory before the model was built). What remains is the framework's
own code and data pages that the step touches (kernels, thread pools, autograd, oneDNN's JIT kernels), which every
run on this machine pays once. The training process's becomes the profile's ``runtime_reserved_gib``; the serving
process's (no autograd or optimizer, bf16 kernels) stays in ``profile.measurements.footprint`` for ``check serve``.

The serving model is wide enough (64) that its bf16 GEMMs take the oneDNN path a real model's do: at width 16
they fall back to another kernel, and the footprint came out 14 MiB instead of the 23 MiB that widths 64 and 128
measured on the development VM. Its tensors (about 0.2 MiB) stay well under 1% of what is measured.
"""

from __future__ import annotations

_MINIMAL = {"num_layers": 1, "num_heads": 2, "num_kv_heads": 1}
_TRAINING = {**_MINIMAL, "hidden_size": 16, "head_dim": 8, "ffn_size": 16, "vocab_size": 32}
_SERVING = {**_MINIMAL, "hidden_size": 64, "head_dim": 32, "ffn_size": 128, "vocab_size": 256}


def bench_runtime_memory(threads: int, clock: str, tick) -> list[dict]:
    from fathom.catalog.models import get_model
    from fathom.profiling.check import run_workers

    base = get_model("tiny-llama")
    common = {"threads": threads, "clock": clock, "memory": True, "steps": 1, "repeats": 1, "warmup": 1}
    train = {"job": "train", "spec": base.model_copy(update=_TRAINING).model_dump(), "micro_batch": 1, "seq_len": 8}
    serve = {"job": "serve", "spec": base.model_copy(update=_SERVING).model_dump(), "dtype": "bf16"}
    serve.update(batch=2, input_len=32, output_len=4)
    rows = []
    for op, args in (("training_process", train), ("serving_process", serve)):
        peak = run_workers({**common, **args}, 1, 600.0, exact_memory=True)["peak_memory_bytes"]
        if peak:
            rows.append({"op": op, "bytes": peak})
    tick()
    return rows
