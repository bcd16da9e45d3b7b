"""SGLang: a ``python -m sglang.launch_server ...`` command.

Flags as documented in https://docs.sglang.ai/advanced_features/server_arguments.html (``ServerArgs``). SGLang
chunks prefills by default (``--chunked-prefill-size -1`` turns that off) and caches prefixes in its radix tree by
default (``--disable-radix-cache``). ``--max-prefill-tokens`` bounds the prompt tokens of one batch; fathom's
per-iteration token budget maps onto it and onto the chunk size. The KV page is ``--page-size``.
"""

from __future__ import annotations

from fathom.errors import FathomInputError
from fathom.export.base import ImportedServing, ServingSetup
from fathom.export.cmdline import Options, parse_script, render_command
from fathom.export.registry import ServingEngine
from fathom.export.serving_common import FROM_TORCH_DTYPE, common_notes, model_dtype, read_weights
from fathom.specs.model import ModelSpec
from fathom.specs.serving import ServingPlan

DOC_URL = "https://docs.sglang.ai/advanced_features/server_arguments.html"
_QUANT = {"fp8": "fp8", "int8": "gptq", "int4": "awq"}
# FlashAttention 3 is SGLang's fa3 backend; FlashInfer's prefill/decode kernels are the FlashAttention-2 class.
_ATTENTION = {"flash3": "fa3", "flash2": "flashinfer", "flash1": "flashinfer"}
_FROM_ATTENTION = {"fa3": "flash3", "flashinfer": "flash2", "triton": "flash2", "fa4": "flash3"}
BARE_FLAGS = ("--disable-radix-cache", "--disable-cuda-graph", "--enable-ep-moe", "--trust-remote-code")


def write(setup: ServingSetup, model_name: str, spec: ModelSpec | None = None) -> tuple[str, dict]:
    p = setup.plan
    notes = common_notes(setup, "SGLang")
    opts: list[tuple[str, object]] = [("--model-path", model_name), ("--tp-size", p.tp), ("--pp-size", p.pp)]
    if p.ep > 1:
        opts.append(("--ep-size", p.ep))
    opts.append(("--dtype", model_dtype(setup)))
    if p.weight_dtype in _QUANT:
        opts.append(("--quantization", _QUANT[p.weight_dtype]))
    opts.append(("--kv-cache-dtype", "fp8_e4m3" if p.kv_dtype == "fp8" else "auto"))
    chunk = p.max_batch_tokens if setup.scheduler == "chunked-prefill" else -1
    opts += [
        ("--max-running-requests", p.max_batch),
        ("--max-prefill-tokens", p.max_batch_tokens),
        ("--chunked-prefill-size", chunk),
        ("--page-size", p.block_size),
        ("--mem-fraction-static", p.memory_utilization),
        ("--attention-backend", _ATTENTION[p.attention]),
    ]
    if p.attention == "flash1":
        notes["attention"] = "SGLang has no FlashAttention-1 backend; wrote flashinfer"
    if not setup.prefix_caching:
        opts.append(("--disable-radix-cache", None))
    if not p.cuda_graphs:
        opts.append(("--disable-cuda-graph", None))
    header = f"#!/usr/bin/env bash\n# SGLang server written by fathom for {model_name}. Flags: {DOC_URL}\n"
    return header + render_command(["python", "-m", "sglang.launch_server"], opts), notes


def read(text: str) -> ImportedServing:
    source = "sglang arguments"
    if "sglang" not in text:
        text = f"python -m sglang.launch_server {text}"
    script = parse_script(text)
    found = script.find("sglang.launch_server", "sglang")
    if found is None:
        raise FathomInputError(f"{source}: no `python -m sglang.launch_server` command found")
    o = Options(found[1], source, BARE_FLAGS)
    warnings: list[str] = []
    dtype, weight = read_weights(o, source, warnings)
    kv = o.text("--kv-cache-dtype", default="auto")
    backend = o.text("--attention-backend", default="flashinfer")
    if backend not in _FROM_ATTENTION:
        warnings.append(f"attention: SGLang's {backend} backend read as flash2")
    chunk = o.number("--chunked-prefill-size", default=8192)
    budget = o.number("--max-prefill-tokens", default=chunk if chunk > 0 else 16384)
    tp = o.number("--tp-size", "--tensor-parallel-size", "--tp", default=1)
    plan = ServingPlan(
        tp=tp,
        pp=o.number("--pp-size", "--pipeline-parallel-size", default=1),
        ep=o.number("--ep-size", "--expert-parallel-size", default=tp if o.flag("--enable-ep-moe") else 1),
        weight_dtype=weight,
        kv_dtype="fp8" if kv.startswith("fp8") else dtype if kv == "auto" else FROM_TORCH_DTYPE.get(kv, dtype),
        attention=_FROM_ATTENTION.get(backend, "flash2"),
        cuda_graphs=not o.flag("--disable-cuda-graph"),
        max_batch=o.number("--max-running-requests", default=256),
        max_batch_tokens=budget,
        block_size=o.number("--page-size", default=1),
        memory_utilization=o.number("--mem-fraction-static", default=0.9, kind=float),
    )
    setup = ServingSetup(
        plan=plan,
        scheduler="chunked-prefill" if chunk > 0 else "continuous",
        prefix_caching=not o.flag("--disable-radix-cache"),
    )
    return ImportedServing(setup=setup, model=o.text("--model-path", "--model"), warnings=warnings)


ENGINE = ServingEngine(name="sglang", title="SGLang", doc_url=DOC_URL, write=write, read=read)
