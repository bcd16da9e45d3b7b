"""Memory-bound microbenchmarks: streamed copies, elementwise and norm ops, the AdamW step, per-op overhead.

Bytes are what each op must move at least (inputs read once, outputs written once), the quantity
``fathom.costmodel.kernels.memory_bound_s`` prices; the optimizer step is recorded with the bytes per parameter
the training model charges it (``fathom.training.step_time.OPTIMIZER_STEP_BYTES``).
"""

from __future__ import annotations

from fathom.profiling.bench_kernels import fp8_matmul, torch_dtype
from fathom.profiling.grids import Grid
from fathom.profiling.timing import Timer

_TINY_OPS = 200  # ops per timed call of the overhead benchmark


def bench_copy(grid: Grid, device: str, timer: Timer, tick) -> list[dict]:
    """Streamed bandwidth: ``y.copy_(x)`` (read + write) and ``z = x + y`` (two reads, one write) in fp32."""
    import torch

    rows = []
    for numel in grid.copy_numel:
        x, y, z = (torch.randn(numel, device=device) for _ in range(3))
        for op, nbytes, fn in (
            ("copy", 8.0 * numel, lambda x=x, y=y: y.copy_(x)),
            ("add", 12.0 * numel, lambda x=x, y=y, z=z: torch.add(x, y, out=z)),
        ):
            s, ref = timer.around("memory", lambda fn=fn: timer.median(fn, grid.repeats, 1, grid.budget_per_case_s))
            rows.append({"op": op, "bytes": nbytes, "kernels": 1, "seconds": s, **ref})
        tick()
    return rows


def bench_elementwise(grid: Grid, device: str, timer: Timer, tick, dtypes=("fp32",)) -> list[dict]:
    """Activation, residual add, RMSNorm and LayerNorm over a (tokens, 1024) activation in each dtype (fp32 for
    training; 16-bit as serving runs them, where each element is converted to fp32 and back on a CPU)."""
    import torch
    import torch.nn.functional as F

    rows = []
    width = 1024
    for dtype in dtypes:
        dt = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
        for numel in grid.elementwise_numel:
            tokens = max(numel // width, 1)
            x, r = (torch.randn(tokens, width, device=device, dtype=dt) for _ in range(2))
            w = torch.ones(width, device=device, dtype=dt)
            nbytes = float(torch.finfo(dt).bits // 8 * tokens * width)
            # (call, passes over the activation, ops dispatched): what each op moves as this torch runs it. On a
            # CPU RMSNorm is decomposed (pow, mean, add, rsqrt, two muls: 7 passes, 6 ops; 16-bit adds the up-
            # and downcast ops, its passes counted as fathom.training.eager counts them); LayerNorm's kernel
            # reads its input twice (statistics, then normalise) and writes once.
            cpu = device == "cpu"
            rms_ops = (6 + 2 * (dtype != "fp32")) if cpu else 1
            ops = {
                "silu": (lambda x=x: F.silu(x), 2.0, 1),
                "gelu": (lambda x=x: F.gelu(x), 2.0, 1),
                "residual_add": (lambda x=x, r=r: x + r, 3.0, 1),
                "rms_norm": (lambda x=x, w=w: F.rms_norm(x, (width,), w), 7.0 if cpu else 2.0, rms_ops),
                "layer_norm": (lambda x=x, w=w: F.layer_norm(x, (width,), w, w), 3.0 if cpu else 2.0, 1),
            }
            for name, (fn, passes, kernels) in ops.items():
                s, ref = timer.around("memory", lambda fn=fn: timer.median(fn, grid.repeats, 1, grid.budget_per_case_s))
                row = {"op": name, "dtype": dtype, "bytes": passes * nbytes, "kernels": kernels, "seconds": s}
                rows.append({**row, **ref})
            tick()
    return rows


def bench_loss(grid: Grid, device: str, timer: Timer, tick) -> list[dict]:
    """fp32 softmax cross-entropy over (1024 tokens, vocab) logits, forward and backward, each repeat on fresh
    logits from a GEMM as the LM head leaves them: a CPU computes an exp (and a log) per logit, and on logits a GEMM
    has just written it runs 2-2.5x slower than on a buffer it read a moment before (measured on the development
    VM: 7-8.6 ns a logit forward and 11-15 ns backward, against 3.6-3.9 and 4.7-6.8 ns warm)."""
    import statistics

    import torch
    import torch.nn.functional as F

    rows = []
    tokens, width = 1024, 128  # the GEMM only makes the logits fresh; a narrow one keeps the case short
    for numel in grid.loss_logits:
        vocab = max(numel // tokens, 2)
        hidden = torch.randn(tokens, width, device=device)
        # logits of unit spread, as a trained head gives (fathom.profiling.torch_model._init_weights: a wide spread
        # underflows the softmax into subnormals, a slow path no real run takes)
        head = torch.randn(width, vocab, device=device) / width**0.5
        targets = torch.randint(0, vocab, (tokens,), device=device)

        def passes(hidden=hidden, head=head, targets=targets):
            fwd, bwd, held = [], [], {}
            for i in range(grid.repeats + 1):  # the first pass warms up
                logits = (hidden @ head).requires_grad_()
                t_f = timer.once(lambda logits=logits: held.__setitem__("loss", F.cross_entropy(logits, targets)))
                t_b = timer.once(lambda: held["loss"].backward())
                if i:
                    fwd.append(t_f)
                    bwd.append(t_b)
            return statistics.median(fwd), statistics.median(bwd)

        (t_fwd, t_bwd), ref = timer.around("memory", passes)
        rows.append({"op": "cross_entropy", "logits": tokens * vocab, "fwd_s": t_fwd, "bwd_s": t_bwd, **ref})
    tick()
    return rows


def bench_dropout(grid: Grid, device: str, timer: Timer, tick) -> list[dict]:
    """Training-mode dropout (p 0.1) over a (tokens, 1024) fp32 activation: read, write and a 1-byte mask, plus
    one random number per element, which a CPU draws itself (about 13 ns an element on the development VM)."""
    import torch
    import torch.nn.functional as F

    rows = []
    width = 1024
    for numel in grid.elementwise_numel:
        x = torch.randn(max(numel // width, 1), width, device=device)

        def case(x=x):
            return timer.median(lambda: F.dropout(x, 0.1, True), grid.repeats, 1, grid.budget_per_case_s)

        s, ref = timer.around("memory", case)
        rows.append({"op": "dropout", "elements": x.numel(), "bytes": 9.0 * x.numel(), "seconds": s, **ref})
    tick()
    return rows


def bench_first_touch(grid: Grid, device: str, timer: Timer, tick) -> list[dict]:
    """Writing a freshly allocated fp32 buffer of ``grid.first_touch_numel`` elements against writing a reused one:
    the difference is what the new mapping's pages cost (page faults, the kernel zeroing each page), paid by every
    eager op output of 32 MiB or more on a CPU (0.33-0.58 ms a MB on the development VM, about 2 GB/s)."""
    import torch

    n = grid.first_touch_numel
    buf = torch.empty(n, device=device)
    buf.fill_(0.0)

    def case():
        reused = timer.median(lambda: buf.fill_(1.0), grid.repeats, 1, grid.budget_per_case_s)
        fresh = timer.median(lambda: torch.empty(n, device=device).fill_(1.0), grid.repeats, 1, grid.budget_per_case_s)
        return max(fresh - reused, 0.0)

    s, ref = timer.around("memory", case)
    tick()
    return [{"op": "first_touch", "bytes": 4.0 * n, "seconds": s, **ref}]


def bench_optimizer(grid: Grid, device: str, timer: Timer, tick) -> list[dict]:
    """One AdamW step over ``n`` parameters with gradients (the fused kernel where torch has one): fp32, as fp32
    training and the fp32 master copy of mixed precision step, and bf16 (moments in bf16 too, no master copy), as
    pure bf16 training steps. Bytes as the training model charges them (``OPTIMIZER_STEP_BYTES``; pure 16-bit:
    the weights and both moments read and written, the gradient read)."""
    import torch

    from fathom.training.finetune import PURE_16BIT_STATE_BYTES
    from fathom.training.step_time import OPTIMIZER_STEP_BYTES

    per_param = {"fp32": OPTIMIZER_STEP_BYTES["adamw"], "bf16": 2.0 * (PURE_16BIT_STATE_BYTES["adamw"] + 2.0) + 2.0}
    rows = []
    for dtype, step_bytes in per_param.items():
        dt = torch.float32 if dtype == "fp32" else torch.bfloat16
        for n in grid.optimizer_params:
            p = torch.nn.Parameter(torch.randn(n, device=device, dtype=dt))
            p.grad = torch.randn(n, device=device, dtype=dt)
            opt = make_adamw([p])
            s, ref = timer.around(
                "memory", lambda opt=opt: timer.median(opt.step, grid.repeats, 2, grid.budget_per_case_s)
            )
            row = {"op": "adamw", "params": n, "bytes": step_bytes * n, "kernels": 4, "seconds": s, **ref}
            rows.append(row if dtype == "fp32" else {**row, "dtype": dtype})
            tick()
    return rows


def make_adamw(params):
    """AdamW as the checks run it: the fused single-kernel step (no per-tensor temporaries) when available."""
    import torch

    try:
        return torch.optim.AdamW(params, lr=1e-4, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(params, lr=1e-4, foreach=False)


def bench_overhead(grid: Grid, device: str, timer: Timer, tick, dtypes: tuple[str, ...] = ("fp32",)) -> list[dict]:
    """Fixed cost of one eager op: ``_TINY_OPS`` in-place adds on a one-element tensor, per op (on a GPU also
    replayed as a CUDA graph: the kernel's own cost); and the host cost per dispatched op of a whole eager training
    layer (``eager_layer_op``; on a GPU the layer is so narrow that the host's issue sets its time). Also a minimal
    GEMM per ``dtype`` (``tiny_gemm``): on a CPU its fixed cost per call is the library's (oneDNN's bf16 path: about
    40 us against 5 for fp32 on the development VM), which decoding's skinny GEMMs pay; on a GPU the host's time to
    issue one (an FP8 ``_scaled_mm`` costs about twice a bf16 matmul), below which the GEMM cases run back to back
    cannot go."""
    import torch

    x = torch.zeros(1, device=device)

    def many():
        for _ in range(_TINY_OPS):
            x.add_(1.0)

    s, ref = timer.around("host", lambda: timer.median(many, max(grid.repeats, 3), 1, grid.budget_per_case_s))
    rows = [{"op": "tiny_add", "seconds_per_op": s / _TINY_OPS, **ref}]
    if device != "cpu":  # a GPU's own fixed cost per kernel: the same adds replayed as a CUDA graph, no host issue
        rows.append(_graph_tiny_ops(grid, device, timer, many))
    rows += [_tiny_gemm(grid, timer, dtype, device) for dtype in dtypes]
    rows.append(bench_eager_layer_op(grid, timer, device=device))
    if device != "cpu":  # serving's forward without autograd (on a CPU host_op_us is priced for both)
        rows.append(bench_eager_layer_op(grid, timer, device=device, inference=True))
    tick()
    return rows


def _tiny_gemm(grid: Grid, timer: Timer, dtype: str, device: str = "cpu") -> dict:
    """Seconds per call of ``_TINY_OPS`` (8, 64) x (64, 64) GEMMs in ``dtype``: decode-shaped rows, operands of a
    few kilobytes, so the call's fixed cost is all that is timed (FP8: 16 rows, its least, through ``_scaled_mm`` as
    ``bench_gemm_fp8`` calls it)."""
    import torch

    if dtype == "fp8":
        call = fp8_matmul(16, 64, 64, device)
    else:
        x = torch.randn(8, 64, dtype=torch_dtype(dtype), device=device)
        w = torch.randn(64, 64, dtype=torch_dtype(dtype), device=device)
        call = lambda: torch.mm(x, w)  # noqa: E731

    def many():
        for _ in range(_TINY_OPS):
            call()

    s, ref = timer.around("host", lambda: timer.median(many, max(grid.repeats, 3), 1, grid.budget_per_case_s))
    return {"op": "tiny_gemm", "dtype": dtype, "seconds_per_op": s / _TINY_OPS, **ref}


def _graph_tiny_ops(grid: Grid, device: str, timer: Timer, many) -> dict:
    """Seconds per kernel of ``_TINY_OPS`` one-element adds captured in a CUDA graph and replayed: the device's
    launch-to-launch cost when the host has queued ahead (``efficiency.kernel_launch_us``)."""
    import torch

    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        many()  # warm-up on a side stream, as graph capture requires
    torch.cuda.current_stream(device).wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        many()
    s, ref = timer.around("host", lambda: timer.median(graph.replay, max(grid.repeats, 3), 1, grid.budget_per_case_s))
    return {"op": "tiny_add_graph", "seconds_per_op": s / _TINY_OPS, **ref}


def bench_eager_layer_op(
    grid: Grid, timer: Timer, extra_layers: int = 4, device: str = "cpu", inference: bool = False
) -> dict:
    """Host seconds per dispatched op of the reference decoder layer (``fathom.profiling.torch_model``) in
    training, forward and backward (``inference``: a serving iteration, forward without autograd, through the
    KV cache), at a width where the arithmetic is negligible: the time a model with ``1 + extra_layers`` layers
    takes beyond a one-layer model, over the ops those layers dispatch (counted under ``TorchDispatchMode``:
    views, autograd's bookkeeping and the allocator included)."""
    import torch

    from fathom.catalog.models import get_model
    from fathom.profiling.op_count import count_ops
    from fathom.profiling.torch_model import Decoder

    base = get_model("tiny-llama").model_copy(
        update={"hidden_size": 16, "num_heads": 2, "num_kv_heads": 1, "head_dim": 8, "ffn_size": 16, "vocab_size": 32}
    )
    tokens = torch.randint(0, 32, (1, 8), device=device)
    times, ops, speeds = [], [], []
    for layers in (1, 1 + extra_layers):
        model = Decoder(base.model_copy(update={"num_layers": layers}), 8).to(device)
        if inference:
            model.allocate_cache(1, 8, torch.float32)
            step = lambda model=model: model.next_tokens(tokens, 0)  # noqa: E731
        else:
            step = lambda model=model: model(tokens, tokens).backward()  # noqa: E731
        fwd, bwd = count_ops(step if inference else lambda model=model: model(tokens, tokens), not inference)
        ops.append(fwd + bwd)
        t, ref = timer.around(
            "host", lambda step=step: timer.median(step, max(grid.repeats, 5), 2, grid.budget_per_case_s)
        )
        times.append(t)
        speeds.append(ref.get("ref_speed"))
    n = ops[1] - ops[0]
    row = {
        "op": "eager_inference_op" if inference else "eager_layer_op",
        "ops": n,
        "seconds": times[1] - times[0],
        "seconds_per_op": (times[1] - times[0]) / n,
    }
    if speeds[0] is not None:
        row.update({"ref": "host", "ref_speed": (speeds[0] + speeds[1]) / 2.0})
    return row
