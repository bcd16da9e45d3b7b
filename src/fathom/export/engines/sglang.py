"""SGLang: a ``python -m sglang.launch_server ...`` command.

Flags as documented in https://docs.sglang.ai/advanced_features/server_arguments.html (``ServerArgs``). SGLang
chunks prefills by default (``--chunked-prefill-size -1`` turns that off) and caches prefixes in its radix tree by
default (``--disable-radix-cache``). ``--max-prefill-tokens`` bounds the prompt tokens of one batch; fathom's
per-iteration token budget maps onto it and onto the chunk size. The KV page is ``--page-size``. The importer
range-checks numbers, refuses words SGLang refuses, and warns about every flag it reads approximately or ignores
(server and logging flags excepted).
"""

from __future__ import annotations

from fathom.errors import FathomInputError
from fathom.export.base import ImportedServing, ServingSetup
from fathom.export.cmdline import Options, parse_script, render_command
from fathom.export.registry import ServingEngine
from fathom.export.serving_common import (
    CPU_OFFLOAD,
    DATA_PARALLEL,
    LORA,
    QUANT_FLAG,
    SPECULATIVE,
    FlagReader,
    common_notes,
    model_dtype,
)
from fathom.specs.model import ModelSpec

DOC_URL = "https://docs.sglang.ai/advanced_features/server_arguments.html"
# FlashAttention 3 is SGLang's fa3 backend; FlashInfer's prefill/decode kernels are the FlashAttention-2 class.
_ATTENTION = {"flash3": "fa3", "flash2": "flashinfer", "flash1": "flashinfer"}
_FROM_ATTENTION = {"fa3": "flash3", "flashinfer": "flash2"}
_APPROX_ATTENTION = {"triton": "flash2", "fa4": "flash3"}  # priced as the nearest FlashAttention generation
BARE_FLAGS = (
    "--disable-radix-cache",
    "--disable-cuda-graph",
    "--enable-ep-moe",
    "--trust-remote-code",
    "--enable-lora",
    "--enable-dp-attention",
    "--enable-torch-compile",
    "--enable-mixed-chunk",
    "--enable-metrics",
    "--log-requests",
    "--show-time-cost",
    "--skip-tokenizer-init",
)
# --kv-cache-dtype: SGLang ServerArgs.kv_cache_dtype choices (auto, fp8_e5m2, fp8_e4m3, bf16, bfloat16, fp4_e2m1).
KV_DTYPES: dict[str, str | None] = {
    "auto": None,
    "bf16": "bf16",
    "bfloat16": "bf16",
    "fp8_e4m3": "fp8",
    "fp8_e5m2": "fp8",
}
KV_APPROX = {"fp4_e2m1": "narrow"}
# Flags that change neither speed nor memory: the HTTP server, logging, tokenizer, download and tool parsing.
NO_EFFECT = (
    *("--host", "--port", "--api-key", "--served-model-name", "--trust-remote-code", "--tokenizer-path"),
    *("--tokenizer-mode", "--revision", "--download-dir", "--load-format", "--random-seed", "--log-level"),
    *("--log-level-http", "--log-requests", "--log-requests-level", "--chat-template", "--enable-metrics"),
    *("--show-time-cost", "--skip-tokenizer-init", "--tool-call-parser", "--reasoning-parser"),
    *("--ssl-keyfile", "--ssl-certfile", "--file-storage-path"),
)
UNREAD = {
    **dict.fromkeys(("--dp-size", "--dp", "--data-parallel-size"), DATA_PARALLEL),
    "--enable-dp-attention": "data-parallel attention is not modelled; the plan is priced with TP attention",
    **dict.fromkeys(("--enable-lora", "--lora-paths", "--max-loras-per-batch", "--max-lora-rank"), LORA),
    **dict.fromkeys(
        (
            "--speculative-algorithm",
            "--speculative-draft-model-path",
            "--speculative-num-steps",
            "--speculative-eagle-topk",
            "--speculative-num-draft-tokens",
        ),
        SPECULATIVE,
    ),
    "--cpu-offload-gb": CPU_OFFLOAD,
    "--config": "fathom does not read SGLang's YAML config file; give its settings as flags",
}


def write(setup: ServingSetup, model_name: str, spec: ModelSpec | None = None) -> tuple[str, dict]:
    p = setup.plan
    notes = common_notes(setup, "SGLang")
    opts: list[tuple[str, object]] = [("--model-path", model_name), ("--tp-size", p.tp), ("--pp-size", p.pp)]
    if p.ep > 1:
        opts.append(("--ep-size", p.ep))
    opts.append(("--dtype", model_dtype(setup)))  # float16 for awq/gptq: their only activation dtype
    if p.weight_dtype in QUANT_FLAG:
        opts.append(("--quantization", QUANT_FLAG[p.weight_dtype]))
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
    if p.max_model_len is not None:
        opts.append(("--context-length", p.max_model_len))
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
    words = found[1]
    at = next(i for i, w in enumerate(words) if w.rsplit("/", 1)[-1] in ("sglang.launch_server", "sglang"))
    a = FlagReader(Options(words[at + 1 :], source, BARE_FLAGS), "SGLang")
    dtype, weight = a.weights()
    kv = a.kv_cache(("--kv-cache-dtype",), dtype, KV_DTYPES, KV_APPROX)
    backend = a.text("--attention-backend", default="flashinfer")
    if backend in _APPROX_ATTENTION:
        a.warn("--attention-backend", f"SGLang's {backend} backend priced as {_APPROX_ATTENTION[backend]}")
    elif backend not in _FROM_ATTENTION:
        a.warn("--attention-backend", f"SGLang's {backend} backend read as flash2")
    chunk = a.integer("--chunked-prefill-size", default=8192, minimum=-1)  # -1 turns chunking off
    budget = a.integer("--max-prefill-tokens", default=chunk if chunk > 0 else 16384)
    tp = a.integer("--tp-size", "--tensor-parallel-size", "--tp", default=1)
    ep_default = tp if a.flag("--enable-ep-moe") else 1
    plan = a.plan(
        tp=tp,
        pp=a.integer("--pp-size", "--pipeline-parallel-size", default=1),
        ep=a.integer("--ep-size", "--expert-parallel-size", default=ep_default),
        weight_dtype=weight,
        kv_dtype=kv,
        attention=_FROM_ATTENTION.get(backend) or _APPROX_ATTENTION.get(backend, "flash2"),
        cuda_graphs=not a.flag("--disable-cuda-graph"),
        max_batch=a.integer("--max-running-requests", default=256),
        max_batch_tokens=budget,
        block_size=a.integer("--page-size", default=1),
        memory_utilization=a.fraction("--mem-fraction-static", default=0.9),
        max_model_len=a.length("--context-length"),
    )
    setup = ServingSetup(
        plan=plan,
        scheduler="chunked-prefill" if chunk > 0 else "continuous",
        prefix_caching=not a.flag("--disable-radix-cache"),
    )
    model = a.text("--model-path", "--model")
    a.unread(UNREAD, NO_EFFECT)
    return ImportedServing(setup=setup, model=model, warnings=a.warnings)


ENGINE = ServingEngine(name="sglang", title="SGLang", doc_url=DOC_URL, write=write, read=read)
