"""``fathom models``, ``fathom gpus``, ``fathom systems``: what is built in, with sources."""

from __future__ import annotations

from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from fathom.cli.render import print_json

_WIDE_ENOUGH_FOR_SOURCES = 120
_SOURCES_OPTION = typer.Option("--sources/--no-sources", help="Show each entry's source.")


def print_catalog(title: str, columns: list[str], rows: list[tuple[list[str], str]], sources: bool) -> None:
    """A catalog table: names and numbers never cut; each row's source in its own column on a terminal wide
    enough for it, else left out with a line saying where to find it (a pipe gets 80 columns)."""
    console = Console()
    narrow = sources and console.width < _WIDE_ENOUGH_FOR_SOURCES
    sources = sources and not narrow
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i == 0 else "right", no_wrap=True)
    if sources:
        table.add_column("source", overflow="fold", max_width=60)
    for cells, source in rows:
        table.add_row(*cells, *([source] if sources else []))
    console.print(table)
    if narrow:
        console.print(f"(sources: a terminal at least {_WIDE_ENOUGH_FOR_SOURCES} columns wide, or --json)")


def register(app: typer.Typer) -> None:
    @app.command("models")
    def models(
        json_out: Annotated[bool, typer.Option("--json")] = False,
        sources: Annotated[bool, typer.Option("--sources/--no-sources", help="Show each preset's source.")] = True,
    ) -> None:
        """List built-in model presets with their parameter counts and sources."""
        from fathom.catalog.models import get_model, list_models

        specs = [get_model(n) for n in list_models()]
        if json_out:
            print_json(
                [
                    {
                        "name": m.name,
                        "family": m.family,
                        "params": m.num_params,
                        "active_params": m.num_active_params,
                        "reported_params": m.reported_params,
                        "layers": m.num_layers,
                        "hidden_size": m.hidden_size,
                        "moe": m.is_moe,
                        "source": m.source,
                    }
                    for m in specs
                ]
            )
            return
        rows = [
            (
                [
                    m.name,
                    f"{m.num_params / 1e9:.2f}B",
                    f"{m.num_active_params / 1e9:.2f}B",
                    str(m.num_layers),
                    str(m.hidden_size),
                    f"{m.num_heads}/{m.num_kv_heads}",
                    str(m.vocab_size),
                ],
                m.source,
            )
            for m in specs
        ]
        columns = ["name", "params", "active", "layers", "hidden", "heads/kv", "vocab"]
        print_catalog(f"{len(specs)} built-in models", columns, rows, sources)

    @app.command("gpus")
    def gpus(
        json_out: Annotated[bool, typer.Option("--json")] = False, sources: Annotated[bool, _SOURCES_OPTION] = True
    ) -> None:
        """List built-in devices with datasheet figures and sources."""
        from fathom.catalog.hardware import get_device, list_gpus

        devices = [get_device(n) for n in list_gpus()]
        if json_out:
            print_json([d.model_dump(mode="json") for d in devices])
            return
        rows = [
            (
                [
                    d.name,
                    str(d.peak_tflops.get("bf16", "-")),
                    str(d.peak_tflops.get("fp8", "-")),
                    f"{d.memory_gib:g}",
                    f"{d.mem_bw_GBps:g}",
                    f"{d.tdp_w:g}",
                    d.default_system or "-",
                ],
                d.source,
            )
            for d in devices
        ]
        columns = ["name", "bf16 TF", "fp8 TF", "GiB", "HBM GB/s", "TDP W", "system"]
        title = f"{len(devices)} built-in devices (TF: dense peak TFLOP/s, no sparsity; GiB: memory)"
        print_catalog(title, columns, rows, sources)

    @app.command("systems")
    def systems(
        json_out: Annotated[bool, typer.Option("--json")] = False, sources: Annotated[bool, _SOURCES_OPTION] = True
    ) -> None:
        """List built-in systems: GPUs per node and per-GPU bandwidth of each tier."""
        from fathom.catalog.hardware import get_system, list_systems

        specs = [get_system(n) for n in list_systems()]
        if json_out:
            print_json([s.model_dump(mode="json") for s in specs])
            return
        rows = [
            (
                [
                    s.name,
                    s.device,
                    str(s.gpus_per_node),
                    f"{s.intra_node_bw_GBps:g}",
                    f"{s.inter_node_bw_GBps:g}",
                ],
                s.source,
            )
            for s in specs
        ]
        columns = ["name", "device", "GPUs/node", "intra GB/s", "inter GB/s"]
        print_catalog(f"{len(specs)} built-in systems (GB/s per GPU per direction)", columns, rows, sources)
