"""The measuring side of ``fathom check``: runs in its own process (``python -m fathom.profiling.check_worker``).

The work runs on ``a["device"]``: ``"cpu"``, or ``"cuda"`` for a GPU profile, where data-parallel rank r uses
``cuda:r`` (one GPU per rank, an NCCL process group; gloo on the CPU). Every timed phase waits for the work
queued before it and for its own (``Timer.phase``: a CUDA synchronise before and after; nothing on the CPU),
and the speed references and the probe GEMM run on the same device.

A fresh process per run, so the memory baseline is clean. On the CPU, timed runs keep glibc's allocator as it
is; for the memory run the parent tells glibc (``MALLOC_MMAP_THRESHOLD_``) to give every large tensor its own
mapping, returned on free: resident memory then follows the live tensors. Peak memory there is the kernel's
high-water mark of resident memory (``VmHWM``, reset through ``/proc/self/clear_refs``) minus the resident
memory before the model was built: torch's CPU allocator keeps no statistics, and tracemalloc sees only
Python's own allocations, not tensors (``peak_memory_measure`` "resident"). On CUDA it is the caching
allocator's own count of live tensor bytes, ``torch.cuda.max_memory_allocated`` after
``reset_peak_memory_stats``, minus ``memory_allocated`` before the model was built ("allocated"); the
allocator's reserved segments are reported beside it (``peak_memory_reserved_bytes``), and neither includes the
CUDA context (see ``fathom.profiling.check`` for what the prediction is compared with).
"""

from __future__ import annotations

import gc
import json
import re
import statistics
import sys
import traceback
from pathlib import Path

import torch
import torch.distributed as dist

from fathom.profiling.bench_memory import make_adamw
from fathom.profiling.check import WORKER_FAILED
from fathom.profiling.speed import SpeedReference
from fathom.profiling.timing import Timer
from fathom.profiling.torch_model import Decoder
from fathom.specs.model import ModelSpec


def _status(field: str) -> float:
    text = Path("/proc/self/status").read_text()
    return float(re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE).group(1)) * 1024  # type: ignore[union-attr]


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def device_of(a: dict) -> str:
    """The torch device of this worker: ``cuda:RANK`` for a GPU check (one GPU per data-parallel rank), else cpu."""
    return f"cuda:{a.get('rank', 0)}" if a.get("device", "cpu") == "cuda" else "cpu"


def warm_cuda_libraries(device: str) -> None:
    """Let cuBLAS allocate its workspaces (through PyTorch's caching allocator, on the first GEMM of each dtype)
    before the memory baseline is read: they belong with the CUDA context to the runtime reserve, which the
    prediction compared on a GPU leaves out (``fathom.profiling.check``), not to the model's tensors."""
    for dtype in (torch.float32, torch.bfloat16):
        x = torch.ones(64, 64, device=device, dtype=dtype, requires_grad=True)
        (x @ x).sum().backward()
    torch.cuda.synchronize(device)


class PeakMemory:
    """Peak memory of the measured step above the baseline read at construction (before the model is built):
    resident memory on the CPU (``VmHWM``), allocated tensor bytes on CUDA (``max_memory_allocated``)."""

    def __init__(self, device: str):
        self.device, self.cuda = device, device != "cpu"
        self.measure = "allocated" if self.cuda else "resident"
        if self.cuda:
            self.base = float(torch.cuda.memory_allocated(device))
            self.base_reserved = float(torch.cuda.memory_reserved(device))
        else:
            self.base = _status("VmRSS")

    def reset(self) -> bool:
        """Start the peak afresh (from what is live now); False where the CPU's high-water mark cannot be reset."""
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
            return True
        return _reset_peak()

    def peak(self) -> float:
        if self.cuda:  # the allocator counts at allocation, on the host: no synchronise needed
            return float(torch.cuda.max_memory_allocated(self.device)) - self.base
        return _status("VmHWM") - self.base

    def peak_reserved(self) -> float | None:
        """The allocator's reserved segments at their peak (CUDA only: the CPU has no such count)."""
        if not self.cuda:
            return None
        return float(torch.cuda.max_memory_reserved(self.device)) - self.base_reserved


_DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


def _probe(a: dict, timer: Timer, device: str = "cpu"):
    """A function timing the profile's reference GEMM now (median of three), or None without one."""
    spec = a.get("probe")
    if not spec:
        return None
    dtype = _DTYPES[spec["dtype"]]
    x = torch.randn(spec["m"], spec["k"], dtype=dtype, device=device)
    w = torch.randn(spec["k"], spec["n"], dtype=dtype, device=device)
    return lambda: timer.median(lambda: x @ w, 3, 1, 2.0)


_READ_EVERY = 8  # decode steps between reference readings (a reading takes about as long as 4 tiny-model steps)


def _references(a: dict, timer: Timer, device: str = "cpu") -> SpeedReference | None:
    """The profile's reference kernels (``fathom.profiling.speed``) on the work's device, read between the timed
    steps."""
    names = a.get("speed_refs") or []
    return SpeedReference(device, timer, names) if names else None


def measure_train(a: dict) -> dict:
    torch.manual_seed(a["rank"])
    torch.set_num_threads(a["threads"])
    world, device = a["world"], device_of(a)
    cuda = device != "cpu"
    if cuda:
        torch.cuda.set_device(device)
        warm_cuda_libraries(device)
    if world > 1:
        backend = "nccl" if cuda else "gloo"
        dist.init_process_group(backend, init_method=f"file://{a['init_file']}", rank=a["rank"], world_size=world)
    gc.collect()
    memory = PeakMemory(device)
    spec = ModelSpec.model_validate(a["spec"])
    model = Decoder(spec, a["seq_len"]).to(_DTYPES[a.get("dtype", "fp32")])  # bf16: pure bf16 training
    if cuda:
        model = model.to(device)
    run = model
    if world > 1:
        run = torch.nn.parallel.DistributedDataParallel(model, device_ids=[a["rank"]] if cuda else None)
    opt = make_adamw(model.parameters())
    tokens = torch.randint(0, spec.vocab_size, (a["micro_batch"], a["seq_len"]), device=device)
    targets = torch.randint(0, spec.vocab_size, (a["micro_batch"], a["seq_len"]), device=device)
    timer = Timer.make(device, a["clock"])
    phases: dict[str, list[float]] = {"forward": [], "backward": [], "optimizer": []}
    peak, peak_ok = None, False
    holder: dict = {}
    probe, probes = _probe(a, timer, device), []
    refs, readings = _references(a, timer, device), {}
    marks: dict[str, list[list[int]]] = {"forward": [], "backward": [], "optimizer": []}

    def read() -> int:
        """Read the references; data-parallel ranks then wait for each other, so that one rank's readings never
        fall inside another's timed phase (its backward would wait for them in the gradient all-reduce)."""
        first = refs.read_all(readings)
        if world > 1 and cuda:
            dist.barrier(device_ids=[a["rank"]])
        elif world > 1:
            dist.barrier()
        return first

    for step in range(a["warmup"] + a["steps"]):
        if probe is not None and step >= a["warmup"]:
            probes.append(probe())
        if refs is not None and step >= a["warmup"]:
            first = read()
            for i, key in enumerate(marks):  # each phase lies between two consecutive readings
                marks[key].append([first + i, first + i + 1])
        if step == a["warmup"]:
            gc.collect()
            peak_ok = memory.reset()
        timed = step >= a["warmup"]
        t_f = timer.phase(lambda: holder.__setitem__("loss", run(tokens, targets)))
        if refs is not None and timed:
            read()  # between phases too: a spell lasts about a second, a step may take longer
        t_b = timer.phase(lambda: holder["loss"].backward())
        if refs is not None and timed:
            read()
        t_o = timer.phase(opt.step)
        opt.zero_grad(set_to_none=False)  # gradient buffers persist, as Megatron's main grads and DDP's buckets
        if step == a["warmup"] and peak_ok:
            peak = memory.peak()
        if step >= a["warmup"]:
            for key, t in zip(phases, (t_f, t_b, t_o), strict=True):
                phases[key].append(t)
    if refs is not None:
        read()  # after the last step too: every step has a reading on each side
    if world > 1:
        dist.destroy_process_group()
    med = {k: statistics.median(v) for k, v in phases.items()}
    return {
        "phases": med,
        "samples": phases,
        "speed_readings": readings,
        "speed_marks": marks if refs is not None else {},
        "peak_memory_bytes": peak,
        "peak_memory_measure": memory.measure,
        "peak_memory_reserved_bytes": memory.peak_reserved() if peak is not None else None,
        "device": device,
        "probe_s": statistics.median(probes) if probes else None,
        "params": sum(p.numel() for p in model.parameters()),
    }


def measure_serve(a: dict) -> dict:
    """Prefill and decode steps of a fresh KV cache per repeat. The memory run (``a["memory"]``) measures the peak
    over the repeat after the warm-up, as ``measure_train`` does over its step: the model is built in fp32 and cast,
    so its construction's transient fp32 copy is not part of what serving holds."""
    torch.manual_seed(0)
    torch.set_num_threads(a["threads"])
    spec = ModelSpec.model_validate(a["spec"])
    batch, n_in, n_out = a["batch"], a["input_len"], a["output_len"]
    max_len = n_in + n_out
    dtype = _DTYPES[a["dtype"]]
    device = device_of(a)
    if device != "cpu":
        torch.cuda.set_device(device)
        warm_cuda_libraries(device)
    gc.collect()
    meter = PeakMemory(device)
    model = Decoder(spec, max_len).to(dtype).eval()
    if device != "cpu":  # cast on the host first: only the bf16 weights reach the GPU
        model = model.to(device)
    memory, peak, peak_ok = a.get("memory", False), None, False
    timer = Timer.make(device, a["clock"])
    prefill, decode = [], []
    probe, probes = _probe(a, timer, device), []
    refs, readings = _references(a, timer, device), {}
    marks: dict[str, list] = {"prefill": [], "decode": []}  # per sample: the readings just before and after it
    for rep in range(a["warmup"] + a["repeats"]):
        if probe is not None and rep >= a["warmup"]:
            probes.append(probe())
        timed = refs is not None and rep >= a["warmup"]
        if memory and rep == a["warmup"]:
            gc.collect()
            peak_ok = meter.reset()
        model.allocate_cache(batch, max_len, dtype)
        prompt = torch.randint(0, spec.vocab_size, (batch, n_in), device=device)
        out: dict = {}
        before = refs.read_all(readings) if timed else 0
        t_p = timer.phase(lambda prompt=prompt, out=out: out.__setitem__("tok", model.next_tokens(prompt, 0)))
        if timed:
            after = refs.read_all(readings)
            marks["prefill"].append([before, after])
            before, spans = after, []
        steps = []
        for i in range(n_out - 1):
            step = lambda i=i, out=out: out.__setitem__("tok", model.next_tokens(out["tok"], n_in + i))  # noqa: E731
            steps.append(timer.phase(step))
            if timed and (i % _READ_EVERY == _READ_EVERY - 1 or i == n_out - 2):
                after = refs.read_all(readings)
                spans += [[before, after]] * (i + 1 - len(spans))
                before = after
        if memory and rep == a["warmup"] and peak_ok:
            peak = meter.peak()
        if rep >= a["warmup"]:
            prefill.append(t_p)
            decode.append(steps)
            if timed:
                marks["decode"].append(spans)
    per_step = [statistics.median(col) for col in zip(*decode, strict=True)] if n_out > 1 else []
    probe_s = statistics.median(probes) if probes else None
    return {
        "prefill_s": statistics.median(prefill),
        "prefill_samples": prefill,
        "decode_step_s": per_step,
        "decode_samples": decode,
        "probe_s": probe_s,
        "speed_readings": readings,
        "speed_marks": marks if refs is not None else {},
        "peak_memory_bytes": peak,
        "peak_memory_measure": meter.measure,
        "peak_memory_reserved_bytes": meter.peak_reserved() if peak is not None else None,
        "device": device,
    }


def _failure(exc: BaseException) -> str:
    """One line for the user: the error's own message, never its class name (a traceback precedes it on stderr)."""
    if isinstance(exc, MemoryError):
        return "out of memory"
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else "it stopped without a message (the traceback above says where)"


def main() -> None:
    args = json.loads(sys.argv[1])
    try:
        result = measure_train(args) if args["job"] == "train" else measure_serve(args)
    except Exception as exc:  # noqa: BLE001 - reported to the parent as one line, after the traceback
        traceback.print_exc()
        print(WORKER_FAILED + _failure(exc), file=sys.stderr)
        sys.exit(1)
    if args.get("rank", 0) == 0:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
