"""fathom against Microsoft's vidur (PyPI ``vidur``) on one identical chat-like request trace.

Run (fathom half only; vidur need not be installed)::

    .venv/bin/python benchmarks/bench_vs_vidur.py --num-requests 100000

With vidur in its own venv (``python3 -m venv /tmp/vidur-venv && /tmp/vidur-venv/bin/pip install vidur``)::

    .venv/bin/python benchmarks/bench_vs_vidur.py --num-requests 100000 \\
        --vidur-python /tmp/vidur-venv/bin/python --vidur-profiles /tmp/vidur-profiles

Why the extra inputs: vidur 0.0.26 downloads its kernel profiles from HuggingFace datasets at run time. Where
that is unreachable, ``--vidur-profiles`` names a folder holding vidur's own measured A100 profiles from its
GitHub repository (``data/profiling/compute/a100/meta-llama/Meta-Llama-3-8B/mlp.csv`` and
``data/profiling/network/a100_dgx/{all_reduce,send_recv}.csv``); this script serves them to vidur as local
"datasets". vidur's measured attention table is stored in Git LFS, so the attention table handed to vidur is
generated here from fathom's own attention terms (the comparison then differs in GEMM/norm costs, which vidur
takes from measurements and fathom from its roofline model, and in the schedulers).

Both simulators replay the same trace: Poisson arrivals at ``--rate``, lognormal prompt/output lengths (the
chat-like mix of bench_serving.py), each request clipped to vidur's 4,096-token context for Llama-3-8B. Setup:
Llama-3-8B, one A100-80GB, TP1, 90% of memory for weights+KV, at most 128 sequences per batch. Pairs:
fathom ``continuous`` (prefill-first, 4,096-token budget) vs vidur ``vllm``; fathom ``chunked-prefill``
(512-token budget) vs vidur ``sarathi`` (chunk 512). Timings are wall-clock on this machine; the best of
``--repeats`` runs is kept because the machine is shared.
"""

from __future__ import annotations

import argparse
import csv
import json
import lzma
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from fathom.api.serving import Workload, simulate_serving
from fathom.catalog.hardware import resolve_cluster
from fathom.catalog.models import get_model
from fathom.inference.step_model import InferenceStepModel
from fathom.serving.lengths import parse_length_dist
from fathom.serving.workload import generate_requests
from fathom.specs.serving import ServingPlan

MODEL, GPU = "llama-3-8b", "a100-80gb"
VIDUR_MODEL, VIDUR_DEVICE, VIDUR_NETWORK = "meta-llama/Llama-3-8B", "a100", "a100_dgx"
MAX_TOKENS = 4096  # vidur's max_model_len for Llama-3-8B
MAX_BATCH = 128  # vidur's default batch cap and prediction grid
PAIRS = {"continuous": ("vllm", 4096), "chunked-prefill": ("sarathi", 512)}

# Runs inside vidur's venv: serve the local profile folders in place of HuggingFace downloads, time the phases.
_VIDUR_RUNNER = r"""
import json, sys, time
t0 = time.perf_counter()
import vidur.execution_time_predictor.sklearn_execution_time_predictor as predictor
compute_dir, network_dir = sys.argv[1], sys.argv[2]
def local_snapshot(repo_id, cache_dir="", **_):
    if "profiling_data/compute" in cache_dir:
        return compute_dir
    if "profiling_data/network" in cache_dir:
        return network_dir
    raise OSError("offline: no precomputed predictions")
predictor.snapshot_download = local_snapshot
sys.argv = ["vidur"] + sys.argv[3:]
from vidur.config import SimulationConfig
from vidur.simulator import Simulator
from vidur.utils.random import set_seeds
config = SimulationConfig.create_from_cli_args()
set_seeds(config.seed)
t1 = time.perf_counter()
sim = Simulator(config)
t2 = time.perf_counter()
sim.run()
t3 = time.perf_counter()
print("VIDUR_TIMES " + json.dumps({"import_s": t1 - t0, "setup_s": t2 - t1, "run_s": t3 - t2,
                                   "output_dir": config.metrics_config.output_dir}))
"""


def write_traces(num_requests: int, rate: float, seed: int, folder: Path) -> tuple[Path, Path]:
    """One request list from fathom's generator, written for fathom (CSV) and for vidur's trace replay."""
    requests = generate_requests(
        arrival="poisson",
        rate=rate,
        num_requests=num_requests,
        duration_s=None,
        input_dist=parse_length_dist("lognormal:mean=1000,sigma=0.8", "input"),
        output_dist=parse_length_dist("lognormal:mean=250,sigma=0.8", "output"),
        rng=np.random.default_rng(seed),
    )
    fathom_csv, vidur_csv = folder / "trace_fathom.csv", folder / "trace_vidur.csv"
    with fathom_csv.open("w", newline="") as f_out, vidur_csv.open("w", newline="") as v_out:
        f_rows, v_rows = csv.writer(f_out), csv.writer(v_out)
        f_rows.writerow(["arrival_s", "input_tokens", "output_tokens"])
        v_rows.writerow(["Date", "Time", "PromptTokenCount", "CompletionTokenCount"])
        for r in requests:
            output = min(r.output_tokens, MAX_TOKENS // 2)
            prompt = min(r.input_tokens, MAX_TOKENS - output)  # vidur trims the prompt the same way
            f_rows.writerow([f"{r.arrival_s:.6f}", prompt, output])
            v_rows.writerow(["2024-01-01", f"{r.arrival_s:.6f}", prompt, output])
    return fathom_csv, vidur_csv


def run_fathom(trace: Path, scheduler: str, budget: int) -> tuple[float, dict]:
    start = time.perf_counter()
    run = simulate_serving(
        model=MODEL,
        gpu=GPU,
        plan=ServingPlan(max_batch=MAX_BATCH, max_batch_tokens=budget),
        workload=Workload(arrival="trace", trace=str(trace)),
        scheduler=scheduler,
        seed=1,
    )
    wall = time.perf_counter() - start
    r = run.report
    return wall, {
        "completed": r.completed,
        "requests_per_s": r.throughput.requests_per_s,
        "output_tokens_per_s": r.throughput.output_tokens_per_s,
        "ttft_p50_s": r.ttft_s.p50,
        "ttft_p90_s": r.ttft_s.p90,
        "tpot_p50_s": r.tpot_s.p50,
        "e2e_p50_s": r.e2e_s.p50,
    }


def fathom_attention_rows() -> list[dict]:
    """A per-layer attention table in vidur's profile format, from fathom's own attention terms (FlashAttention-2
    rate for prefill query-key pairs, HBM streaming of the paged KV for decode), so both simulators share them.

    The two rates are read off fathom's public step time as differences in context length, which cancel the
    context-free GEMM, LM-head and launch terms."""
    spec = get_model(MODEL)
    step = InferenceStepModel(spec, resolve_cluster(GPU, 1), ServingPlan()).step_time_s
    layers = spec.num_layers
    kv_s = (step([], [], [1024.0]) - step([], [], [0.0])) / 1024 / layers  # seconds per cached token read
    pair_s = (step([2048], [2048.0], []) - step([2048], [0.0], [])) / 2048**2 / layers  # per query-key pair
    launch_s = 0.0
    common = {
        "n_embd": spec.hidden_size,
        "n_q_head": spec.num_heads,
        "n_kv_head": spec.num_kv_heads,
        "block_size": 16,
        "num_tensor_parallel_workers": 1,
        "time_stats.attn_kv_cache_save.median": 0.0,
    }
    rows = []
    for batch in range(1, MAX_BATCH + 1):
        for kv in range(0, MAX_TOKENS + 1, 256):
            ms = (batch * kv * kv_s + launch_s) * 1e3
            rows.append(
                common
                | {
                    "batch_size": batch,
                    "prefill_chunk_size": 0,
                    "kv_cache_size": kv,
                    "time_stats.attn_prefill.median": 0.0,
                    "time_stats.attn_decode.median": ms,
                }
            )
    for chunk in (32, 64, 128, 256, 512, 768, 1024, 1536, 2048, 3072, 4096):
        for kv in range(0, MAX_TOKENS - chunk + 1, 128):
            ms = (max(chunk * (kv + chunk / 2) * pair_s, kv * kv_s) + launch_s) * 1e3
            rows.append(
                common
                | {
                    "batch_size": 1,
                    "prefill_chunk_size": chunk,
                    "kv_cache_size": kv,
                    "time_stats.attn_prefill.median": ms,
                    "time_stats.attn_decode.median": 0.0,
                }
            )
    return rows


def _write_xz_csv(path: Path, rows: list[dict]) -> None:
    with lzma.open(path, "wt", newline="") as f:
        out = csv.DictWriter(f, fieldnames=list(rows[0]))
        out.writeheader()
        out.writerows(rows)


def prepare_vidur_datasets(profiles: Path, folder: Path) -> tuple[Path, Path]:
    compute, network = folder / "compute", folder / "network"
    compute.mkdir(exist_ok=True)
    network.mkdir(exist_ok=True)
    (compute / "config.json").write_text(json.dumps({"model": VIDUR_MODEL, "device_sku": VIDUR_DEVICE}))
    (network / "config.json").write_text(json.dumps({"sku": VIDUR_NETWORK}))
    for source, target in (("mlp.csv", compute), ("all_reduce.csv", network), ("send_recv.csv", network)):
        (target / f"{source}.xz").write_bytes(lzma.compress((profiles / source).read_bytes()))
    _write_xz_csv(compute / "attention.csv.xz", fathom_attention_rows())
    return compute, network


def vidur_args(trace: Path, scheduler: str, budget: int, cache: Path, out: Path) -> list[str]:
    p = "--random_forrest_execution_time_predictor_config_"
    args = [
        "--replica_config_model_name",
        VIDUR_MODEL,
        "--replica_config_device",
        VIDUR_DEVICE,
        "--replica_config_network_device",
        VIDUR_NETWORK,
        "--replica_config_tensor_parallel_size",
        "1",
        "--replica_config_num_pipeline_stages",
        "1",
        "--replica_config_gpu_memory_utilization",
        "0.9",
        "--cluster_config_num_replicas",
        "1",
        "--replica_scheduler_config_type",
        scheduler,
        "--request_generator_config_type",
        "trace_replay",
        "--trace_request_generator_config_trace_file",
        str(trace),
        "--trace_request_generator_config_date",
        "2024-01-01",
        "--trace_request_generator_config_prefill_scale_factor",
        "1",
        "--trace_request_generator_config_decode_scale_factor",
        "1",
        "--trace_request_generator_config_time_scale_factor",
        "1",
        "--trace_request_generator_config_max_tokens",
        str(MAX_TOKENS),
        f"{p}cache_dir",
        str(cache),
        f"{p}prediction_max_tokens_per_request",
        str(MAX_TOKENS),
        f"{p}prediction_max_batch_size",
        str(MAX_BATCH),
        "--metrics_config_output_dir",
        str(out),
        # one point of vidur's default random-forest grid and 3-fold CV: its one-off training is cached anyway
        f"{p}num_estimators",
        "250",
        f"{p}max_depth",
        "16",
        f"{p}min_samples_split",
        "2",
        f"{p}k_fold_cv_splits",
        "3",
        f"{p}num_training_job_threads",
        "2",
        "--no-metrics_config_store_plots",
        "--no-metrics_config_enable_chrome_trace",  # a per-event JSON trace fathom does not write either
    ]
    if scheduler == "vllm":
        args += [
            "--vllm_scheduler_config_batch_size_cap",
            str(MAX_BATCH),
            "--vllm_scheduler_config_max_tokens_in_batch",
            str(budget),
        ]
    else:
        args += [
            "--sarathi_scheduler_config_batch_size_cap",
            str(MAX_BATCH),
            "--sarathi_scheduler_config_chunk_size",
            str(budget),
        ]
    return args


def run_vidur(python: str, datasets: tuple[Path, Path], args: list[str], trace: Path) -> tuple[float, dict, dict]:
    start = time.perf_counter()
    done = subprocess.run(
        [python, "-c", _VIDUR_RUNNER, str(datasets[0]), str(datasets[1]), *args], capture_output=True, text=True
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"vidur failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    line = next(x for x in done.stdout.splitlines() if x.startswith("VIDUR_TIMES "))
    phases = json.loads(line.removeprefix("VIDUR_TIMES "))
    return wall, phases, vidur_metrics(Path(phases["output_dir"]), trace)


def vidur_metrics(out: Path, trace: Path) -> dict:
    """Headline numbers from vidur's per-request CSV, in fathom's definitions: TTFT = arrival to end of prefill,
    TPOT = (end-to-end - TTFT) / (output tokens - 1), throughput over first arrival to last completion (vidur's
    CSV has no arrival column, so arrivals come from the trace by request id)."""
    with trace.open() as f:
        arrival = np.array([float(r["Time"]) for r in csv.DictReader(f)])
    with next(out.rglob("request_metrics.csv")).open() as f:
        rows = list(csv.DictReader(f))
    ids = np.array([int(r["Request Id"]) for r in rows])
    ttft, e2e, decode_tokens = (
        np.array([float(r[k]) for r in rows])
        for k in ("prefill_e2e_time", "request_e2e_time", "request_num_decode_tokens")
    )
    span = float(np.max(arrival[ids] + e2e) - np.min(arrival[ids]))
    many = decode_tokens > 1
    tpot = (e2e - ttft)[many] / (decode_tokens[many] - 1)
    return {
        "completed": len(rows),
        "requests_per_s": len(rows) / span,
        "output_tokens_per_s": float(decode_tokens.sum()) / span,
        "ttft_p50_s": float(np.median(ttft)),
        "ttft_p90_s": float(np.percentile(ttft, 90)),
        "tpot_p50_s": float(np.median(tpot)),
        "e2e_p50_s": float(np.median(e2e)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num-requests", type=int, default=100_000)
    ap.add_argument("--rate", type=float, default=6.0, help="requests/s (about 90%% of one A100's capacity here)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--schedulers", default="continuous,chunked-prefill")
    ap.add_argument("--vidur-python", help="python of a venv with vidur installed; omit to time fathom only")
    ap.add_argument("--vidur-profiles", type=Path, help="folder with vidur's mlp.csv, all_reduce.csv, send_recv.csv")
    ap.add_argument("--workdir", type=Path, help="where traces and vidur's outputs go (default: a temp folder)")
    a = ap.parse_args()
    folder = a.workdir or Path(tempfile.mkdtemp(prefix="fathom-vs-vidur-"))
    folder.mkdir(parents=True, exist_ok=True)
    fathom_trace, vidur_trace = write_traces(a.num_requests, a.rate, seed=1, folder=folder)
    datasets = prepare_vidur_datasets(a.vidur_profiles, folder) if a.vidur_python else None
    print(f"{a.num_requests:,} requests, Poisson {a.rate}/s, {MODEL} on one {GPU}, TP1; best of {a.repeats}")
    for scheduler in a.schedulers.split(","):
        v_scheduler, budget = PAIRS[scheduler]
        f_wall, f_metrics = min(
            (run_fathom(fathom_trace, scheduler, budget) for _ in range(a.repeats)), key=lambda x: x[0]
        )
        print(f"\nfathom {scheduler:16s} {f_wall:7.2f} s wall  {a.num_requests / f_wall:9,.0f} simulated req/s")
        if not datasets:
            print("  " + json.dumps(f_metrics))
            continue
        args = vidur_args(vidur_trace, v_scheduler, budget, folder / "vidur_cache", folder / "vidur_out")
        if not (folder / "vidur_cache" / "predictions").exists():  # the first run trains vidur's predictors, cached
            run_vidur(a.vidur_python, datasets, args, vidur_trace)
        v_wall, phases, v_metrics = min(
            (run_vidur(a.vidur_python, datasets, args, vidur_trace) for _ in range(a.repeats)), key=lambda x: x[0]
        )
        print(
            f"vidur  {v_scheduler:16s} {v_wall:7.2f} s wall  {a.num_requests / v_wall:9,.0f} simulated req/s "
            f"(import {phases['import_s']:.1f} s, setup {phases['setup_s']:.1f} s, run {phases['run_s']:.1f} s)"
        )
        print(
            f"speed ratio fathom/vidur: {v_wall / f_wall:.1f}x wall, {phases['run_s'] / f_wall:.1f}x vs vidur's "
            "run phase alone"
        )
        print(f"  {'metric':20s} {'fathom':>10s} {'vidur':>10s}")
        for key in f_metrics:
            print(f"  {key:20s} {f_metrics[key]:10.4g} {v_metrics[key]:10.4g}")


if __name__ == "__main__":
    main()
