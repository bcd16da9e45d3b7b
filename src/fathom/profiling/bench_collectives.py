"""Collective bandwidth and latency between local processes (torch.distributed: gloo on CPU, NCCL on GPUs).

For each group size 2..N, ``all_reduce`` and ``all_gather`` over a range of buffer sizes; ``fit`` solves the
alpha-beta model of ``fathom.costmodel.collectives`` (latency per step, bytes per second) from them.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def _worker(
    rank: int, world: int, init_file: str, out_file: str, sizes: list[int], repeats: int, threads: int, clock: str
) -> None:
    import torch
    import torch.distributed as dist

    from fathom.profiling.timing import CLOCKS, Timer, synchronizer

    torch.set_num_threads(threads)
    cuda = torch.cuda.is_available() and torch.cuda.device_count() >= world
    device = f"cuda:{rank}" if cuda else "cpu"
    dist.init_process_group("nccl" if cuda else "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    sync = synchronizer(device)

    def barrier_sync():
        sync()
        dist.barrier()

    timer = Timer(barrier_sync, CLOCKS[clock])

    rows = []
    for nbytes in sizes:
        numel = max(nbytes // 4, world)
        numel -= numel % world
        buf = torch.ones(numel, device=device)
        shards = [torch.empty(numel // world, device=device) for _ in range(world)]
        mine = torch.ones(numel // world, device=device)
        ar = timer.median(lambda buf=buf: dist.all_reduce(buf), repeats, 1, 5.0)
        ag = timer.median(lambda s=shards, m=mine: dist.all_gather(s, m), repeats, 1, 5.0)
        rows.append({"op": "all_reduce", "ranks": world, "bytes": 4.0 * numel, "seconds": ar})
        rows.append({"op": "all_gather", "ranks": world, "bytes": 4.0 * numel, "seconds": ag})
    if rank == 0:
        Path(out_file).write_text(json.dumps(rows))
    dist.destroy_process_group()


def bench_collectives(sizes: list[int], ranks: list[int], repeats: int, threads: int, clock: str, tick) -> list[dict]:
    """Spawn each group size in turn; rank 0's timings are returned (every rank waits for the slowest)."""
    import torch.multiprocessing as mp

    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="fathom-coll-") as tmp:
        for world in ranks:
            init_file, out_file = os.path.join(tmp, f"init{world}"), os.path.join(tmp, f"out{world}.json")
            mp.start_processes(
                _worker,
                args=(world, init_file, out_file, list(sizes), repeats, threads, clock),
                nprocs=world,
                start_method="spawn",
            )
            rows += json.loads(Path(out_file).read_text())
            tick()
    return rows
