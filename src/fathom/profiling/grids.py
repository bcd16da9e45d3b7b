"""How much the profiler measures: three sizes of the benchmark grid.

``tiny`` is for tests (seconds), ``quick`` finishes in under a minute on a 2-core machine, ``full`` gives the
fit more shapes (on a GPU, ``GPU_GRIDS``: the same three at GPU sizes). Shapes bracket what a step of a small
model on this device runs (GEMM rows = tokens of a micro-batch, columns = hidden and FFN widths), so the fitted
efficiencies describe the kernels that matter.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from fathom.errors import FathomInputError


@dataclass(frozen=True)
class Grid:
    gemm_m: tuple[int, ...]
    gemm_nk: tuple[int, ...]
    gemm_max_flops: float  # skip shapes larger than this (a slow device would spend minutes on them)
    attention_seq: tuple[int, ...]
    attention_heads: int
    elementwise_numel: tuple[int, ...]
    copy_numel: tuple[int, ...]
    optimizer_params: tuple[int, ...]
    collective_bytes: tuple[int, ...]
    max_ranks: int
    repeats: int
    budget_per_case_s: float
    # Skinny GEMMs (decode-like rows: one sequence to a batch of 32) cycling through weights of this many bytes,
    # more than a CPU's caches hold, so the weights stream from memory as each decoding step reads them.
    gemm_stream_m: tuple[int, ...] = (1, 8, 32)
    gemm_stream_bytes: float = 1.28e8
    # Passes over the compute and memory cases, seconds apart; each case's median over them (fathom.profiling.timing).
    passes: int = 3
    # Logits (1024 tokens x vocab) of the fp32 softmax cross-entropy a training step ends with, each repeat freshly
    # written by a GEMM as the LM head leaves them (fathom.profiling.bench_memory.bench_loss).
    loss_logits: tuple[int, ...] = (2**23, 2**24)
    # fp32 elements of the buffer written freshly allocated and reused (bench_memory.bench_first_touch): above glibc's
    # largest mmap threshold (32 MiB), so each fresh one is a new mapping.
    first_touch_numel: int = 2**24
    # Seconds the largest GEMM runs back to back on a GPU (bench_kernels.bench_gemm_sustained): its clocks under load.
    sustained_s: float = 3.0
    # The decode probe (bench_decode): a small synthetic decoder's layers and the decode steps timed per repeat.
    decode_probe_layers: int = 3
    decode_probe_steps: int = 16


GRIDS = {
    "tiny": Grid(
        (64, 256),
        (128, 512),
        1e8,
        (64, 128),
        2,
        (2**14, 2**18),
        (2**20,),
        (2**16,),
        (2**12, 2**18),
        2,
        2,
        0.2,
        (8,),
        3.2e7,
        1,
        (2**18,),
        decode_probe_layers=1,
        decode_probe_steps=4,
    ),
    "quick": Grid(
        (256, 1024),
        (512, 1536),
        5e9,
        (128, 512, 1024),
        8,
        (2**18, 2**20, 2**22),
        (2**20, 2**23),
        (2**20, 2**23),
        (2**12, 2**16, 2**20, 2**22),
        2,
        3,
        0.6,
    ),
    "full": Grid(
        (128, 512, 1024, 2048),
        (256, 768, 1536, 3072),
        2.5e10,
        (128, 256, 512, 1024, 2048),
        8,
        (2**16, 2**18, 2**20, 2**22, 2**24),
        (2**20, 2**23, 2**26),
        (2**20, 2**23, 2**25),
        (2**10, 2**12, 2**14, 2**16, 2**18, 2**20, 2**22, 2**24),
        4,
        5,
        2.0,
    ),
}


# A GPU retires the CPU grid's largest GEMM (5 GFLOP) in microseconds, where a kernel's fixed cost and the timer's
# synchronise dominate: its grids reach the shapes a GPU training step runs (thousands of tokens x widths of
# 1-16K, sequences to 8-16K) and buffers well past its L2 cache (50 MB on an H100). The skinny streamed GEMMs,
# loss, dropout and first-touch cases are CPU-only (``fathom.profiling.runner``), so they keep the CPU's sizes.
GPU_GRIDS = {
    "tiny": replace(
        GRIDS["tiny"],
        gemm_m=(256, 2048),
        gemm_nk=(1024, 4096),
        gemm_max_flops=1e11,
        attention_seq=(2048, 4096),
        attention_heads=16,
        elementwise_numel=(2**22, 2**24),
        copy_numel=(2**24,),
        optimizer_params=(2**22,),
        sustained_s=0.5,
    ),
    "quick": replace(
        GRIDS["quick"],
        gemm_m=(512, 2048, 8192),
        gemm_nk=(1024, 4096, 8192),
        gemm_max_flops=1.2e12,
        attention_seq=(4096, 8192, 16384),
        attention_heads=32,
        elementwise_numel=(2**22, 2**24, 2**26),
        copy_numel=(2**24, 2**27),
        optimizer_params=(2**22, 2**25),
        collective_bytes=(2**12, 2**16, 2**20, 2**24, 2**27),
        max_ranks=8,
        repeats=5,
        budget_per_case_s=0.5,
    ),
    "full": replace(
        GRIDS["full"],
        gemm_m=(256, 1024, 2048, 4096, 8192, 16384),
        gemm_nk=(512, 1024, 2048, 4096, 8192, 16384),
        gemm_max_flops=5e12,
        attention_seq=(2048, 4096, 8192, 16384, 32768),
        attention_heads=32,
        elementwise_numel=(2**20, 2**22, 2**24, 2**26, 2**27),
        copy_numel=(2**22, 2**24, 2**26, 2**28),
        optimizer_params=(2**20, 2**23, 2**26),
        collective_bytes=tuple(2**e for e in range(10, 30, 2)),
        max_ranks=8,
        repeats=7,
        budget_per_case_s=1.0,
        sustained_s=10.0,
    ),
}


def get_grid(name: str, device: str = "cpu") -> Grid:
    """The grid ``name`` for ``device`` ("cpu", or "cuda": the GPU sizes of ``GPU_GRIDS``)."""
    if name not in GRIDS:
        raise FathomInputError(f"grid: unknown name {name!r} (valid: {', '.join(GRIDS)})")
    return (GPU_GRIDS if device.startswith("cuda") else GRIDS)[name]
