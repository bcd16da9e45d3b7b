"""``fathom profile`` (measure this machine into a device YAML) and ``fathom check train|serve`` (predicted vs a
real PyTorch run). Both need the ``profile`` extra (PyTorch); without it they exit with a one-line error."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from fathom.cli.render import print_json
from fathom.errors import FathomInputError

Opt = typer.Option
check_app = typer.Typer(help="Time real PyTorch work and compare it with fathom's prediction.", no_args_is_help=True)


def _render(result: dict, title: str) -> None:
    table = Table(title=title)
    # speed: the check's reference speed / the profile's for the phase's work (fathom.profiling.speed);
    # adjusted error: against the prediction at that speed.
    for col in ("phase", "predicted", "measured", "error", "speed", "adjusted error"):
        table.add_column(col, justify="right" if col != "phase" else "left")
    for name, r in [*result["phases"].items(), ("total", result["total"])]:
        ratio, adjusted = r.get("speed_ratio"), r.get("error_pct_speed_adjusted")
        table.add_row(
            name,
            f"{r['predicted_s'] * 1e3:.2f} ms",
            f"{r['measured_s'] * 1e3:.2f} ms",
            f"{r['error_pct']:+.1f}%",
            f"{ratio:.2f}x" if ratio is not None else "-",
            f"{adjusted:+.1f}%" if adjusted is not None else "-",
        )
    mem = result.get("memory")
    if mem and mem.get("measured_bytes"):
        table.add_row(
            "peak memory",
            f"{mem['predicted_bytes'] / 2**20:.0f} MiB",
            f"{mem['measured_bytes'] / 2**20:.0f} MiB",
            f"{mem['error_pct']:+.1f}%",
            "",
            "",
        )
    notes = []
    probe = result.get("speed_probe")
    if probe:  # the reference GEMM now vs in the profile: > 1 = the machine ran slower than when profiled
        notes.append(f"speed probe ({probe['gemm']}): {probe['slowdown']:.2f}x the profile's time")
    speed = result.get("speed")
    if speed:
        notes.append(
            "reference speed vs profile: " + ", ".join(f"{k} {v['ratio']:.2f}x" for k, v in speed["reference"].items())
        )
    table.caption = "\n".join(notes) or None
    Console().print(table)


def register(app: typer.Typer) -> None:
    @app.command("profile")
    def profile(
        out: Annotated[str, Opt(help="Device profile YAML to write (use it as --gpu).")],
        quick: Annotated[bool, Opt("--quick", help="A smaller grid: under a minute on 2 cores.")] = False,
        tiny: Annotated[bool, Opt("--tiny", help="The smallest grid (seconds; for tests).")] = False,
        threads: Annotated[int | None, Opt(min=1, help="Threads per rank (default: every core).")] = None,
        clock: Annotated[str, Opt(help="wall | cpu (process CPU time; shared machines, --threads 1).")] = "wall",
        base: Annotated[str | None, Opt(help="Catalog gpu whose datasheet peaks to keep (needed on a GPU).")] = None,
        name: Annotated[str | None, Opt(help="Device name (default: the file name).")] = None,
        collectives: Annotated[bool, Opt("--collectives/--no-collectives")] = True,
    ) -> None:
        """Microbenchmark this machine and write a fitted device profile."""
        from fathom.profiling.runner import run_profile

        if tiny and quick:
            raise FathomInputError("--tiny/--quick: give one grid (--tiny: seconds, for tests; --quick: a minute)")
        grid = "tiny" if tiny else ("quick" if quick else "full")
        doc = run_profile(
            out,  # a str: a trailing "/" (a directory) must reach the check, which Path would drop
            grid_name=grid,
            threads=threads,
            base=base,
            name=name,
            collectives=collectives,
            clock=clock,
        )
        fits = doc["profile"]["fit_quality"].items()
        quality = ", ".join(f"{k} {v['median_abs_error_pct']:.0f}%" for k, v in fits if "scale" not in v)
        scales = ", ".join(
            f"{k} x{v['scale']:.2f} (was {v['median_abs_error_pct']:.0f}% off)" for k, v in fits if "scale" in v
        )
        Console().print(
            f"wrote {out} (median fit error: {quality}" + (f"; in-situ scales: {scales})" if scales else ")")
        )

    @check_app.command("train")
    def train(
        model: Annotated[str, Opt(help="Preset name or ModelSpec YAML (dense decoders).")],
        gpu: Annotated[str, Opt(help="Profile YAML `fathom profile` wrote on this machine (CPU or GPU).")],
        micro_batch: Annotated[int, Opt(min=1)] = 4,
        seq_len: Annotated[int, Opt(min=2)] = 256,
        steps: Annotated[int, Opt(min=1, help="Timed steps after three untimed warm-up steps (the steady state).")] = 3,
        dp: Annotated[int, Opt(min=1, help="Data-parallel processes (DDP: gloo on a CPU, NCCL on GPUs).")] = 1,
        precision: Annotated[str, Opt(help="fp32 | bf16 (pure bf16: weights, gradients, AdamW moments).")] = "fp32",
        json_out: Annotated[bool, Opt("--json")] = False,
    ) -> None:
        """Real training steps (forward, backward, AdamW) vs the training estimator."""
        from fathom.profiling.check import check_train
        from fathom.profiling.runner import require_torch

        require_torch("check")
        result = check_train(model, gpu, micro_batch, seq_len, steps=steps, dp=dp, precision=precision)
        if json_out:
            print_json(result)
        else:
            title = f"check train: {result['model']} on {gpu} ({precision}, dp {dp}, {result['clock']} clock)"
            _render(result, title)

    @check_app.command("serve")
    def serve(
        model: Annotated[str, Opt(help="Preset name or ModelSpec YAML (dense decoders).")],
        gpu: Annotated[str, Opt(help="Profile YAML `fathom profile` wrote on this machine (CPU or GPU).")],
        batch: Annotated[int, Opt(min=1)] = 8,
        input_len: Annotated[int, Opt(min=1)] = 128,
        output_len: Annotated[int, Opt(min=2)] = 64,
        repeats: Annotated[int, Opt(min=1, help="Timed runs after one warm-up (median per step).")] = 3,
        json_out: Annotated[bool, Opt("--json")] = False,
    ) -> None:
        """Real bf16 prefill and KV-cached decode steps vs the serving step model."""
        from fathom.profiling.check import check_serve
        from fathom.profiling.runner import require_torch

        require_torch("check")
        result = check_serve(model, gpu, batch, input_len, output_len, repeats=repeats)
        if json_out:
            print_json(result)
        else:
            _render(result, f"check serve: {result['model']} on {gpu} ({result['clock']} clock)")

    app.add_typer(check_app, name="check")
