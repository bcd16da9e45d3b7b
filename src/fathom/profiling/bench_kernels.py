"""Compute microbenchmarks: GEMMs over shapes and dtypes, and fused attention (SDPA) forward and backward.

Each case records the shape and the median seconds; ``fit`` prices the same shapes with
``fathom.costmodel.kernels`` and solves for the device's efficiency parameters.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable

from fathom.profiling.grids import Grid
from fathom.profiling.timing import Timer

Tick = Callable[[], None]


def torch_dtype(name: str):
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def gemm_cases(grid: Grid) -> list[tuple[int, int, int]]:
    shapes = itertools.product(grid.gemm_m, grid.gemm_nk, grid.gemm_nk)
    return [(m, n, k) for m, n, k in shapes if 2.0 * m * n * k <= grid.gemm_max_flops]


def bench_gemm(grid: Grid, dtypes: list[str], device: str, timer: Timer, tick: Tick) -> list[dict]:
    """(m x k) @ (k x n) in each dtype: the dense layers of a transformer."""
    import torch

    rows = []
    for dtype in dtypes:
        for m, n, k in gemm_cases(grid):
            a = torch.randn(m, k, device=device, dtype=torch_dtype(dtype))
            b = torch.randn(k, n, device=device, dtype=torch_dtype(dtype))
            s, ref = timer.around(
                f"gemm_{dtype}", lambda a=a, b=b: timer.median(lambda: a @ b, grid.repeats, 1, grid.budget_per_case_s)
            )
            rows.append({"dtype": dtype, "m": m, "n": n, "k": k, "seconds": s, **ref})
            tick()
    return rows


def fp8_gemms_supported(device: str) -> bool:
    """Whether ``device`` has FP8 tensor cores PyTorch can drive (compute capability 8.9 and later: Ada, Hopper,
    Blackwell) through ``torch._scaled_mm``, the cuBLASLt FP8 GEMM that Transformer Engine's and torchao's FP8
    linears call. Not on ROCm: an MI300's FP8 GEMMs take the ``e4m3fnuz`` format, which this bench does not build."""
    import torch

    if not device.startswith("cuda") or not hasattr(torch, "float8_e4m3fn") or not hasattr(torch, "_scaled_mm"):
        return False
    if getattr(torch.version, "hip", None):
        return False
    return torch.cuda.get_device_capability(device) >= (8, 9)


def fp8_gemm_cases(grid: Grid) -> list[tuple[int, int, int]]:
    """The grid's GEMM shapes cuBLASLt's FP8 layouts take (every dimension a multiple of 16)."""
    return [(m, n, k) for m, n, k in gemm_cases(grid) if not (m % 16 or n % 16 or k % 16)]


def fp8_matmul(m: int, n: int, k: int, device: str) -> Callable[[], object]:
    """An FP8 (m x k) @ (k x n) ready to call: e4m3 operands with unit per-tensor scales and bf16 output, the second
    operand column-major as cuBLASLt's FP8 kernels require."""
    import torch

    one = torch.ones((), device=device, dtype=torch.float32)
    a = torch.randn(m, k, device=device).to(torch.float8_e4m3fn)
    b = torch.randn(n, k, device=device).to(torch.float8_e4m3fn).t()
    return lambda: torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=torch.bfloat16)


def bench_gemm_fp8(grid: Grid, device: str, timer: Timer, tick: Tick) -> list[dict]:
    """(m x k) @ (k x n) in FP8 (``fp8_matmul``). The GEMM kernel alone: an FP8 recipe's casts and transposes are
    memory passes the training estimator prices apart. Read against the bf16 reference GEMM (the same tensor
    cores)."""
    rows = []
    for m, n, k in fp8_gemm_cases(grid):
        fn = fp8_matmul(m, n, k, device)
        s, ref = timer.around("gemm_bf16", lambda fn=fn: timer.median(fn, grid.repeats, 1, grid.budget_per_case_s))
        rows.append({"dtype": "fp8", "m": m, "n": n, "k": k, "seconds": s, **ref})
        tick()
    return rows


def bench_gemm_sustained(grid: Grid, dtypes: list[str], device: str, timer: Timer, tick: Tick) -> list[dict]:
    """The grid's largest GEMM per dtype, isolated (``timer.median``'s short samples) and then back to back for
    ``grid.sustained_s``: a GPU's clocks fall once it runs at its power limit for long, as a training step keeps
    it. ``sustained_s`` is the median per-GEMM time over the run's second half (``efficiency.gemm_sustained``)."""
    import torch

    rows = []
    for dtype in dtypes:
        m, n, k = max(gemm_cases(grid), key=lambda c: c[0] * c[1] * c[2])
        a = torch.randn(m, k, device=device, dtype=torch_dtype(dtype))
        b = torch.randn(k, n, device=device, dtype=torch_dtype(dtype))
        isolated = timer.median(lambda a=a, b=b: a @ b, grid.repeats, 1, grid.budget_per_case_s)
        runs = max(int(0.05 // isolated), 1)  # samples of about 50 ms
        samples: list[float] = []
        start = time.perf_counter()
        while time.perf_counter() - start < grid.sustained_s or len(samples) < 2:
            samples.append(timer.per_run(lambda a=a, b=b: a @ b, runs))
        late = statistics.median(samples[len(samples) // 2 :])
        rows.append({"dtype": dtype, "m": m, "n": n, "k": k, "isolated_s": isolated, "sustained_s": late})
        tick()
    return rows


def stream_cases(grid: Grid) -> list[tuple[int, int, int]]:
    """Weights of long rows (the grid's widest reduction) and of short ones (half its narrowest) over 1 to 32 input
    rows: the row length sets the packing pass's per-row cost apart from its bytes (``efficiency.gemm_row_ns``),
    the input rows how the row work blends with the pass (``efficiency.gemm_overlap``)."""
    lo, hi = grid.gemm_nk[0], grid.gemm_nk[-1]
    return [(m, n, k) for m in grid.gemm_stream_m for n, k in ((lo, hi), (hi, lo // 2))]


def bench_gemm_stream(grid: Grid, dtypes: list[str], device: str, timer: Timer, tick: Tick) -> list[dict]:
    """(m x k) @ (k x n)^T with few rows, as a decoding step runs a linear layer: one pass over ``copies``
    different weights totalling ``grid.gemm_stream_bytes``, so each is read from memory, not from a cache."""
    import torch

    rows = []
    for dtype in dtypes:
        for m, n, k in stream_cases(grid):
            dt = torch_dtype(dtype)
            copies = max(int(grid.gemm_stream_bytes // (n * k * torch.finfo(dt).bits // 8)), 2)
            weights = [torch.randn(n, k, device=device, dtype=dt) for _ in range(copies)]
            x = torch.randn(m, k, device=device, dtype=dt)

            def sweep(x=x, weights=weights):
                for w in weights:
                    x @ w.t()

            s, ref = timer.around(
                "memory", lambda sweep=sweep: timer.median(sweep, grid.repeats, 1, grid.budget_per_case_s)
            )
            rows.append({"dtype": dtype, "m": m, "n": n, "k": k, "copies": copies, "seconds": s / copies, **ref})
            del weights
            tick()
    return rows


def bench_attention(grid: Grid, dtypes: list[str], device: str, timer: Timer, tick: Tick) -> list[dict]:
    """Causal scaled-dot-product attention, forward and forward+backward, one sequence of ``heads`` x 64."""
    import torch
    import torch.nn.functional as F

    rows = []
    heads, head_dim = grid.attention_heads, 64
    for dtype in dtypes:
        for seq in grid.attention_seq:
            shape = (1, heads, seq, head_dim)
            dt = torch_dtype(dtype)
            q, k, v = (torch.randn(shape, device=device, dtype=dt, requires_grad=True) for _ in range(3))
            grad = torch.randn(shape, device=device, dtype=dt)

            def fwd(q=q, k=k, v=v):
                with torch.no_grad():
                    return F.scaled_dot_product_attention(q, k, v, is_causal=True)

            def fwd_bwd(q=q, k=k, v=v, grad=grad):
                F.scaled_dot_product_attention(q, k, v, is_causal=True).backward(grad)

            def both(fwd=fwd, fwd_bwd=fwd_bwd):
                return [timer.median(f, grid.repeats, 1, grid.budget_per_case_s) for f in (fwd, fwd_bwd)]

            (t_fwd, t_both), ref = timer.around(f"gemm_{dtype}", both)
            row = {"dtype": dtype, "seq": seq, "heads": heads, "head_dim": head_dim, "fwd_s": t_fwd}
            row["bwd_s"] = max(t_both - t_fwd, 1e-9)
            row.update(ref)
            rows.append(row)
            tick()
    return rows


# Decode attention (one query per sequence over its cached keys): a decode batch of 8 sequences, 16 query heads over 4
# KV heads (grouped, as the models it prices mostly are), so the query-key work, not the KV read, sets a CPU's time.
DECODE_ATTENTION = {"batch": 8, "heads": 16, "kv_heads": 4, "head_dim": 64, "contexts": (256, 1024)}


def bench_decode_attention(grid: Grid, dtypes: list[str], device: str, timer: Timer, tick: Tick) -> list[dict]:
    """SDPA of one new token per sequence over ``context`` cached keys and values (``DECODE_ATTENTION``)."""
    import torch
    import torch.nn.functional as F

    c = DECODE_ATTENTION
    rows = []
    for dtype in dtypes:
        for context in c["contexts"]:
            q = torch.randn(c["batch"], c["heads"], 1, c["head_dim"], device=device, dtype=torch_dtype(dtype))
            k, v = (
                torch.randn(c["batch"], c["kv_heads"], context, c["head_dim"], device=device, dtype=torch_dtype(dtype))
                for _ in range(2)
            )

            def attend(q=q, k=k, v=v):
                return F.scaled_dot_product_attention(q, k, v, enable_gqa=True)

            s, ref = timer.around(f"gemm_{dtype}", lambda attend=attend: timer.median(attend, grid.repeats, 1, 1.0))
            rows.append({"dtype": dtype, **{k: c[k] for k in ("batch", "heads", "kv_heads", "head_dim")},
                         "context": context, "seconds": s, **ref})  # fmt: skip
        tick()
    return rows
