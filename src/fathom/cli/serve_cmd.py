"""``fathom serve``: simulate a serving deployment under a workload and report latency, throughput and cost."""

from __future__ import annotations

import math
from typing import Annotated

import typer

from fathom.cli.render import print_json
from fathom.errors import FathomInputError

Opt = typer.Option


def _arrival(rate, concurrency, offline, trace, arrival) -> str:
    chosen = [name for name, on in (("--rate", rate is not None), ("--concurrency", concurrency is not None),
                                     ("--offline", offline), ("--trace", trace is not None)) if on]  # fmt: skip
    if len(chosen) != 1:
        raise FathomInputError(
            "workload: give exactly one of --rate, --concurrency, --offline, --trace"
            + (f" (got {', '.join(chosen)})" if chosen else "")
        )
    if trace is not None:
        return "trace"
    if offline:
        return "offline"
    if concurrency is not None:
        return "closed-loop"
    return arrival


def _split(spec: str | None) -> tuple[int, int] | None:
    if spec is None:
        return None
    try:
        prefill, decode = (int(x) for x in spec.split(":"))
    except ValueError:
        raise FathomInputError(
            f"--disaggregate: expected PREFILL:DECODE replica counts like 2:1, got {spec!r}"
        ) from None
    if prefill < 1 or decode < 1:
        raise FathomInputError(f"--disaggregate: both pools need at least one replica, got {spec!r}")
    return prefill, decode


def _offload_fields(weights: str, kv: str, resident: float | None) -> dict:
    """ServingPlan fields of ``--offload-weights --offload-kv --resident-weight-fraction``, checked."""
    from fathom.errors import unknown_name_error

    if weights not in ("none", "cpu", "nvme"):
        raise unknown_name_error("--offload-weights", weights, ("none", "cpu", "nvme"))
    if kv not in ("none", "cpu"):
        raise unknown_name_error("--offload-kv", kv, ("none", "cpu"))
    if resident is not None:
        if weights == "none":
            raise FathomInputError("--resident-weight-fraction needs --offload-weights cpu|nvme")
        if not 0.0 <= resident <= 1.0:
            raise FathomInputError(f"--resident-weight-fraction: must be within 0..1, got {resident}")
    return {"offload_weights": weights, "offload_kv": kv, "resident_weight_fraction": resident}


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether the user typed option ``name`` (a default, even an equal one, is not "given"). Compared by name:
    typer may carry its own copy of click's ParameterSource."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def _check_choices(**flags: str | None) -> None:
    """Names the engine knows, checked before any work: an unknown one names its flag and the choices."""
    from fathom.errors import unknown_name_error
    from fathom.serving.replica_config import CAPACITY_POLICIES, PREEMPTION_MODES
    from fathom.serving.router import list_routers
    from fathom.serving.schedulers import list_schedulers
    from fathom.specs.serving import HOST_PROFILES, KV_DTYPES, WEIGHT_DTYPES

    choices = {"precision": WEIGHT_DTYPES, "kv_dtype": KV_DTYPES, "host_profile": HOST_PROFILES,
               "scheduler": list_schedulers(), "router": list_routers(), "preemption": PREEMPTION_MODES,
               "capacity_policy": CAPACITY_POLICIES, "arrival": ("poisson", "gamma", "fixed-rate")}  # fmt: skip
    relaxed = ("scheduler", "router", "arrival")  # looked up case- and space-insensitively downstream
    for name, value in flags.items():
        key = value.strip().lower() if value is not None and name in relaxed else value
        if value is not None and key not in choices[name]:
            raise unknown_name_error("--" + name.replace("_", "-"), value, choices[name])


def _check_ignored(ctx: typer.Context, kind: str) -> None:
    """Flags the chosen workload would silently ignore: a one-line error instead (the deployment's own, such as
    --decode-tp without --disaggregate, are checked by ``simulate_serving`` for every caller)."""

    def given(*names: str) -> list[str]:
        return ["--" + n.replace("_", "-") for n in names if _given(ctx, n)]

    if kind == "trace":
        stray = given("num_requests", "duration", "input_len", "input_dist", "output_len", "output_dist", "arrival",
                      "cv")  # fmt: skip
        if stray:
            raise FathomInputError(
                f"--trace: the trace sets every request's arrival and lengths; drop {', '.join(stray)}"
            )
    elif kind in ("offline", "closed-loop"):
        stray = given("duration", "arrival", "cv")
        if stray:
            mode = "--offline" if kind == "offline" else "--concurrency"
            them = "them" if len(stray) > 1 else "it"
            raise FathomInputError(f"{mode} ignores {', '.join(stray)} (open-loop arrivals, --rate, only); drop {them}")


def _check_outputs(out: str | None, plot: str | None, report: str | None) -> None:
    """Every output checked before simulating (suffix, directory, that a file can be created there; pyarrow for
    Parquet), so that neither a typo nor an unwritable place costs a run."""
    from pathlib import Path

    from fathom.reports.output import PLOT_SUFFIXES, REPORT_SUFFIXES, check_output_path, check_writable
    from fathom.serving.metrics import TABLE_FORMATS

    outputs = [(p, o) for p, o in ((out, "--out"), (plot, "--plot"), (report, "--report")) if p is not None]
    seen: dict[Path, str] = {}
    for path, option in outputs:
        suffixes = {"--out": TABLE_FORMATS, "--plot": PLOT_SUFFIXES, "--report": REPORT_SUFFIXES}[option]
        resolved = check_output_path(path, option, suffixes).resolve()
        if resolved in seen:
            raise FathomInputError(f"{option}: {path!r} is also the {seen[resolved]} file; give different paths")
        seen[resolved] = option
        check_writable(resolved, option)
        if option == "--out" and resolved.suffix.lower() == ".parquet":
            try:
                import pyarrow.parquet  # noqa: F401
            except ImportError:
                raise FathomInputError(
                    "--out: writing Parquet needs pyarrow (pip install pyarrow), or use .csv"
                ) from None


def _write_outputs(run, out: str | None, plot: str | None, report: str | None, **files) -> None:
    """Write every output beside its destination, then rename them all into place: if one fails, none is left
    (nothing half-written, and no table without its figures)."""
    import os
    from pathlib import Path

    from fathom.serving.metrics import write_requests

    staged: dict[str, Path] = {}  # final path -> its temporary file, until renamed
    names: dict[str, str] = {}  # temporary -> final, for messages

    def stage(path: str | None) -> Path | None:
        if path is None:
            return None
        final = Path(path)
        tmp = final.with_name(f".{final.name}.{os.getpid()}.partial{final.suffix}")  # the suffix picks the format
        staged[path], names[str(tmp)] = tmp, path
        return tmp

    try:
        if out is not None:
            write_requests(run.result.requests, stage(out))
        if plot is not None or report is not None:
            from fathom.reports.serving_report import write_serving_files

            write_serving_files(run.report, run.result, plot_path=stage(plot), report_path=stage(report), **files)
        for final, tmp in list(staged.items()):
            os.replace(tmp, final)
            del staged[final]
    except (OSError, FathomInputError) as exc:
        text = " ".join(str(exc).split())
        for tmp, final in names.items():
            text = text.replace(tmp, final)
        raise FathomInputError(
            text if isinstance(exc, FathomInputError) else f"cannot write the outputs: {text}"
        ) from None
    finally:
        for tmp in staged.values():
            tmp.unlink(missing_ok=True)


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve(
        ctx: typer.Context,
        model: Annotated[str, Opt(help="Preset name, HF config.json or ModelSpec YAML.")],
        gpu: Annotated[str, Opt(help="GPU name or device YAML.")],
        tp: Annotated[int, Opt(min=1)] = 1,
        pp: Annotated[int, Opt(min=1)] = 1,
        ep: Annotated[int, Opt(min=1)] = 1,
        replicas: Annotated[int, Opt(min=1)] = 1,
        system: Annotated[str | None, Opt()] = None,
        precision: Annotated[str, Opt(help="Weights: bf16|fp16|fp8|int8|int4 (int = weight-only).")] = "bf16",
        kv_dtype: Annotated[str | None, Opt(help="KV cache: bf16|fp16|fp8 (default: fp8 with fp8 weights).")] = None,
        rate: Annotated[float | None, Opt(min=0.0, help="Requests per second (open loop).")] = None,
        arrival: Annotated[str, Opt(help="Open-loop process: poisson|gamma|fixed-rate.")] = "poisson",
        cv: Annotated[float, Opt(min=0.0, help="Gamma arrivals: coefficient of variation.")] = 1.0,
        duration: Annotated[float | None, Opt(min=0.0, help="Seconds of arrivals.")] = None,
        num_requests: Annotated[int | None, Opt(min=1)] = None,
        concurrency: Annotated[int | None, Opt(min=1, help="Closed loop: requests kept in flight.")] = None,
        offline: Annotated[bool, Opt("--offline", help="All requests at t=0.")] = False,
        trace: Annotated[str | None, Opt(help="JSONL/CSV trace: arrival_s, input_tokens, output_tokens.")] = None,
        input_len: Annotated[int | None, Opt(min=1)] = None,
        input_dist: Annotated[str | None, Opt(help="e.g. lognormal:mean=300,sigma=0.8")] = None,
        output_len: Annotated[int | None, Opt(min=1)] = None,
        output_dist: Annotated[str | None, Opt()] = None,
        scheduler: Annotated[
            str, Opt(help="static|continuous|chunked-prefill|decode-priority|prompt-first|prompt-first-padded")
        ] = "continuous",
        max_batch: Annotated[int, Opt(min=1, help="Most sequences running at once.")] = 256,
        max_batch_tokens: Annotated[int, Opt(min=1, help="Token budget per iteration.")] = 8192,
        preemption: Annotated[str, Opt(help="recompute|swap")] = "recompute",
        capacity_policy: Annotated[
            str, Opt(help="max-utilization (vLLM) | guaranteed-no-evict (TensorRT-LLM: reserve the whole output)")
        ] = "max-utilization",
        prefix_caching: Annotated[bool, Opt("--prefix-caching")] = False,
        sliding_window: Annotated[
            bool,
            Opt(
                "--sliding-window/--no-sliding-window",
                help="Apply the model's sliding-window attention (off: attend over the whole context, as "
                "TensorRT-LLM does unless max_attention_window_size is set).",
            ),
        ] = True,
        shared_prefix_attention: Annotated[
            bool, Opt("--shared-prefix-attention", help="Hydragen: decoders sharing a cached prefix attend to it once.")
        ] = False,
        nano_batches: Annotated[
            int, Opt(min=1, help="NanoFlow: overlap compute, memory and network work over N nano-batches (1 = off).")
        ] = 1,
        router: Annotated[str, Opt(help="round-robin|least-loaded|prefix-affinity")] = "round-robin",
        disaggregate: Annotated[str | None, Opt(help="PREFILL:DECODE replica counts, e.g. 2:1.")] = None,
        decode_tp: Annotated[int | None, Opt(min=1, help="TP of decode replicas when disaggregated.")] = None,
        kv_link_bw: Annotated[float | None, Opt(min=0.001, help="GB/s between prefill and decode pools.")] = None,
        mixed_pool: Annotated[
            bool, Opt("--mixed-pool", help="Splitwise: disaggregated machines join a mixed pool under load.")
        ] = False,
        cuda_graphs: Annotated[bool, Opt("--cuda-graphs/--no-cuda-graphs")] = True,
        host_profile: Annotated[
            str,
            Opt(
                help="Engine host time per step and per sequence: generic|vllm-v0-eager|sarathi-osdi24-eager "
                "(fitted on the Splitwise and Sarathi-Serve artifacts' profiles; fathom.inference.host)."
            ),
        ] = "generic",
        memory_utilization: Annotated[float, Opt(min=0.05, max=1.0)] = 0.9,
        slo_ttft: Annotated[float | None, Opt(min=0.0, help="Seconds.")] = None,
        slo_tpot: Annotated[float | None, Opt(min=0.0, help="Seconds.")] = None,
        speculative: Annotated[str | None, Opt(help="Speculative decoding: draft:MODEL or ngram.")] = None,
        spec_tokens: Annotated[int | None, Opt(help="Speculative tokens proposed per step (default 4).")] = None,
        spec_acceptance: Annotated[float | None, Opt(help="Acceptance rate of each proposal, 0..1.")] = None,
        offload_weights: Annotated[str, Opt(help="Weights off the GPU, streamed each step: none|cpu|nvme.")] = "none",
        resident_weight_fraction: Annotated[
            float | None,
            Opt(help="Share of weights kept on the GPU (default: the most that leaves KV for one sequence)."),
        ] = None,
        offload_kv: Annotated[str, Opt(help="KV cache in host memory, read over PCIe: none|cpu.")] = "none",
        lora_adapters: Annotated[int | None, Opt(help="Multi-LoRA serving: number of adapters.")] = None,
        adapter_rank: Annotated[int | None, Opt(help="LoRA rank of every adapter (default 16).")] = None,
        adapter_dist: Annotated[str | None, Opt(help="Adapter popularity: uniform|zipf:a=1.2.")] = None,
        max_loras_per_batch: Annotated[int | None, Opt(help="Adapters on the GPU / in one batch (default 4).")] = None,
        max_cpu_loras: Annotated[int | None, Opt(help="Adapters cached in host memory (default: all).")] = None,
        adapter_targets: Annotated[str | None, Opt(help="Adapted matrices: attention|all-linear.")] = None,
        samples: Annotated[int, Opt(help="Parallel samples per request (best-of-N), sharing the prompt's KV.")] = 1,
        seed: Annotated[int, Opt()] = 0,
        price_per_gpu_hour: Annotated[float | None, Opt(min=0.0)] = None,
        out: Annotated[str | None, Opt(help="Per-request results: .csv or .parquet")] = None,
        plot: Annotated[str | None, Opt(help="Figures: .png (one image) or .html (with the metrics).")] = None,
        report: Annotated[str | None, Opt(help="Self-contained HTML report: inputs, metrics, figures.")] = None,
        json_out: Annotated[bool, Opt("--json")] = False,
    ) -> None:
        """Simulate serving: TTFT, TPOT, end-to-end latency percentiles, throughput, goodput and cost."""
        from fathom.api.serving import Workload, simulate_serving
        from fathom.cli.render import render_serving
        from fathom.specs.hardware import validate_or_explain
        from fathom.specs.serving import ServingPlan

        if input_len is not None and input_dist is not None:
            raise FathomInputError("give --input-len or --input-dist, not both")
        if output_len is not None and output_dist is not None:
            raise FathomInputError("give --output-len or --output-dist, not both")
        if rate is not None and not math.isfinite(rate):
            raise FathomInputError(f"--rate {rate} is out of range: must be a finite number of requests/s > 0")
        for flag, value in (("--price-per-gpu-hour", price_per_gpu_hour), ("--slo-ttft", slo_ttft),
                            ("--slo-tpot", slo_tpot), ("--kv-link-bw", kv_link_bw)):  # fmt: skip
            if value is not None and not math.isfinite(value):  # an infinite value would print bare Infinity
                raise FathomInputError(f"{flag} {value} is out of range: must be a finite number")
        from fathom.serving.lengths import parse_length_dist

        for flag, length in (("--input-len", input_len), ("--input-dist", input_dist), ("--output-len", output_len),
                             ("--output-dist", output_dist)):  # fmt: skip
            if length is not None:  # checked here, where the flag is known, to name it in errors
                parse_length_dist(str(length), f"{flag} ({flag[2:].split('-')[0]} length)")
        kind = _arrival(rate, concurrency, offline, trace, arrival)
        _check_choices(precision=precision, kv_dtype=kv_dtype, host_profile=host_profile, scheduler=scheduler,
                       router=router, preemption=preemption, capacity_policy=capacity_policy,
                       arrival=arrival if rate is not None else None)  # fmt: skip
        _check_ignored(ctx, kind)
        from fathom.inference.speculative import parse_speculative

        spec = parse_speculative(speculative, spec_tokens, spec_acceptance)
        from fathom.serving.lora_pool import parse_lora

        lora = parse_lora(lora_adapters, adapter_rank, adapter_dist, max_loras_per_batch, max_cpu_loras,
                          adapter_targets)  # fmt: skip
        offload = _offload_fields(offload_weights, offload_kv, resident_weight_fraction)
        if samples < 1:
            raise FathomInputError(f"--samples: parallel samples per request must be >= 1, got {samples}")
        _check_outputs(out, plot, report)  # before simulating: a typo must not cost a run
        fields = dict(tp=tp, pp=pp, ep=ep, weight_dtype=precision, cuda_graphs=cuda_graphs, host_profile=host_profile,
                      max_batch=max_batch,
                      max_batch_tokens=max_batch_tokens, memory_utilization=memory_utilization,
                      kv_dtype=kv_dtype or ("fp8" if precision == "fp8" else "bf16"),
                      shared_prefix_attention=shared_prefix_attention, nano_batches=nano_batches,
                      sliding_window=sliding_window,
                      **offload)  # fmt: skip
        plan = validate_or_explain(ServingPlan, fields, "serving plan")
        decode_plan = (
            validate_or_explain(ServingPlan, {**fields, "tp": decode_tp}, "decode plan") if decode_tp else None
        )
        workload = Workload(
            arrival=kind,
            rate=rate,
            cv=cv,
            duration_s=duration,
            num_requests=num_requests,
            concurrency=concurrency,
            trace=trace,
            input_len=input_dist or str(input_len or 1024),
            output_len=output_dist or str(output_len or 256),
        )
        run = simulate_serving(
            model=model,
            gpu=gpu,
            plan=plan,
            workload=workload,
            replicas=replicas,
            system=system,
            scheduler=scheduler,
            preemption=preemption,
            capacity_policy=capacity_policy,
            prefix_caching=prefix_caching,
            router=router,
            disaggregate=_split(disaggregate),
            decode_plan=decode_plan,
            kv_link_GBps=kv_link_bw,
            mixed_pool=mixed_pool,
            slo_ttft_s=slo_ttft,
            slo_tpot_s=slo_tpot,
            seed=seed,
            price_per_gpu_hour=price_per_gpu_hour,
            speculative=spec,
            lora=lora,
            samples=samples,
        )
        _write_outputs(run, out, plot, report, slo_ttft_s=slo_ttft, slo_tpot_s=slo_tpot,
                       title=f"fathom serve: {model} on {gpu}",
                       inputs={o.opts[0]: ctx.params[o.name] for o in ctx.command.params})  # fmt: skip
        if json_out:
            print_json({**run.report.model_dump(mode="json"), **run.extras})
        else:
            render_serving(run.report)
