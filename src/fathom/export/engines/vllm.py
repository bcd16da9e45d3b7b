"""vLLM: a ``vllm serve MODEL ...`` command.

Flags as documented in https://docs.vllm.ai/en/latest/configuration/engine_args.html (``EngineArgs``); the
FlashAttention version is vLLM's ``VLLM_FLASH_ATTN_VERSION`` environment variable
(https://docs.vllm.ai/en/latest/configuration/env_vars.html). vLLM V1 turns chunked prefill and prefix caching on
by default, so both are written explicitly either way. Expert parallelism (``--enable-expert-parallel``) spans the
TP group; it has no separate degree. AWQ and GPTQ run float16 activations only, so those exports write
``--dtype float16``. The importer range-checks numbers, refuses words vLLM refuses, and warns about every flag it
reads approximately or ignores (server and logging flags excepted).
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

DOC_URL = "https://docs.vllm.ai/en/latest/configuration/engine_args.html"
PROGRAMS = ("vllm", "vllm.entrypoints.openai.api_server")
BARE_FLAGS = (
    "--enforce-eager",
    "--enable-expert-parallel",
    "--enable-chunked-prefill",
    "--no-enable-chunked-prefill",
    "--enable-prefix-caching",
    "--no-enable-prefix-caching",
    "--disable-sliding-window",
    "--trust-remote-code",
    "--enable-lora",
    "--fully-sharded-loras",
    "--disable-log-stats",
    "--disable-log-requests",
    "--enable-log-requests",
    "--enable-auto-tool-choice",
    "--disable-uvicorn-access-log",
    "--disable-fastapi-docs",
    "--enable-request-id-headers",
    "--enable-prompt-tokens-details",
    "--enable-server-load-tracking",
    "--disable-custom-all-reduce",
    "--async-scheduling",
    "--enable-sleep-mode",
)
# --kv-cache-dtype: vLLM CacheConfig.cache_dtype (CacheDType). fp8 is fp8_e4m3; fp8_inc is Intel Gaudi's FP8.
# None: the model's dtype.
KV_DTYPES: dict[str, str | None] = {
    "auto": None,
    "float16": "fp16",
    "bfloat16": "bf16",
    "fp8": "fp8",
    "fp8_e4m3": "fp8",
    "fp8_e5m2": "fp8",
    "fp8_inc": "fp8",
}
# Cache dtypes fathom prices as fp8: 8-bit ones with their own scale layout, and the ones narrower than 8 bits.
KV_APPROX = {
    "fp8_ds_mla": "8bit",
    "fp8_per_token_head": "8bit",
    "int8_per_token_head": "8bit",
    "nvfp4": "narrow",
    "nvfp4_4over6": "narrow",
    "nvfp4_ds_mla": "narrow",
    "int4_per_token_head": "narrow",
    "turboquant_k8v4": "narrow",
    "turboquant_4bit_nc": "narrow",
    "turboquant_k3v4_nc": "narrow",
    "turboquant_3bit_nc": "narrow",
}
# Flags that change neither speed nor memory: the API server, logging, tokenizer, download and tool parsing.
NO_EFFECT = (
    *("--host", "--port", "--uds", "--api-key", "--served-model-name", "--root-path", "--middleware"),
    *("--ssl-keyfile", "--ssl-certfile", "--ssl-ca-certs", "--allowed-origins", "--allowed-methods"),
    *("--allowed-headers", "--disable-uvicorn-access-log", "--disable-fastapi-docs", "--enable-request-id-headers"),
    *("--uvicorn-log-level", "--disable-log-stats", "--disable-log-requests", "--enable-log-requests", "--max-log-len"),
    *("--trust-remote-code", "--tokenizer", "--tokenizer-mode", "--tokenizer-revision", "--revision"),
    *("--code-revision", "--hf-token", "--download-dir", "--load-format", "--seed", "--generation-config"),
    *("--chat-template", "--response-role", "--enable-auto-tool-choice", "--tool-call-parser", "--reasoning-parser"),
    *("--return-tokens-as-token-ids", "--enable-prompt-tokens-details", "--enable-server-load-tracking"),
)
UNREAD = {
    "--data-parallel-size": DATA_PARALLEL,
    "-dp": DATA_PARALLEL,
    **dict.fromkeys(("--enable-lora", "--max-loras", "--max-lora-rank", "--max-cpu-loras", "--lora-modules"), LORA),
    "--fully-sharded-loras": LORA,
    "--speculative-config": SPECULATIVE,
    "--cpu-offload-gb": CPU_OFFLOAD,
    "--swap-space": "fathom's vLLM plans recompute preempted requests; swap space is not priced",
    "--kv-cache-memory-bytes": "the KV cache is priced from --gpu-memory-utilization, not a byte count",
    "--config": "fathom does not read vLLM's YAML config file; give its settings as flags",
}


def write(setup: ServingSetup, model_name: str, spec: ModelSpec | None = None) -> tuple[str, dict]:
    p = setup.plan
    notes = common_notes(setup, "vLLM")
    opts: list[tuple[str, object]] = [("--tensor-parallel-size", p.tp), ("--pipeline-parallel-size", p.pp)]
    if p.ep > 1:
        opts.append(("--enable-expert-parallel", None))
        if p.ep != p.tp:
            notes["ep"] = f"vLLM's expert parallelism spans the TP group (ep = tp = {p.tp}), not ep={p.ep}"
    opts.append(("--dtype", model_dtype(setup)))  # float16 for awq/gptq: their only activation dtype
    if p.weight_dtype in QUANT_FLAG:
        opts.append(("--quantization", QUANT_FLAG[p.weight_dtype]))
    opts.append(("--kv-cache-dtype", "fp8" if p.kv_dtype == "fp8" else "auto"))
    opts += [
        ("--max-num-seqs", p.max_batch),
        ("--max-num-batched-tokens", p.max_batch_tokens),
        ("--enable-chunked-prefill" if setup.scheduler == "chunked-prefill" else "--no-enable-chunked-prefill", None),
        ("--enable-prefix-caching" if setup.prefix_caching else "--no-enable-prefix-caching", None),
        ("--block-size", p.block_size),
        ("--gpu-memory-utilization", p.memory_utilization),
    ]
    if p.max_model_len is not None:
        opts.append(("--max-model-len", p.max_model_len))
    if not p.sliding_window:
        opts.append(("--disable-sliding-window", None))
    if not p.cuda_graphs:
        opts.append(("--enforce-eager", None))
    if p.attention == "flash1":
        notes["attention"] = "vLLM runs FlashAttention 2 or 3; wrote 2"
    env = {"VLLM_FLASH_ATTN_VERSION": "3" if p.attention == "flash3" else "2"}
    header = f"#!/usr/bin/env bash\n# vLLM server written by fathom for {model_name}. Flags: {DOC_URL}\n"
    return header + render_command(["vllm", "serve"], opts, env=env, positional=[model_name]), notes


def _flag_words(words: list[str]) -> list[str]:
    """vLLM's FlexibleArgumentParser reads ``--max_num_seqs`` as ``--max-num-seqs``."""
    out = []
    for w in words:
        if w.startswith("--"):
            name, eq, value = w.partition("=")
            w = name.replace("_", "-") + eq + value
        out.append(w)
    return out


def read(text: str) -> ImportedServing:
    source = "vllm arguments"
    script = parse_script(text if "\n" in text or "vllm" in text else f"vllm serve {text}")
    found = script.find(*PROGRAMS)
    if found is None:
        raise FathomInputError(f"{source}: no `vllm serve` command found")
    env, words = found
    at = next(i for i, w in enumerate(words) if w.rsplit("/", 1)[-1] in PROGRAMS)
    o = Options(_flag_words(words[at + 1 :]), source, BARE_FLAGS)
    after = o.positional[1:] if o.positional[:1] == ["serve"] else o.positional
    a = FlagReader(o, "vLLM")
    model = a.text("--model") or (after[0] if after else None)
    tp = a.integer("--tensor-parallel-size", "-tp", default=1)
    dtype, weight = a.weights()
    kv = a.kv_cache(("--kv-cache-dtype",), dtype, KV_DTYPES, KV_APPROX)
    flash = env.get("VLLM_FLASH_ATTN_VERSION", script.variables.get("VLLM_FLASH_ATTN_VERSION"))
    max_len = a.text("--max-model-len")
    if max_len in ("auto", "-1"):
        a.warn("--max-model-len", f"{max_len} (the longest context that fits) read as the model's own context length")
        max_len = None
    else:
        max_len = a.length("--max-model-len")
    a.given("--enable-chunked-prefill", "--enable-prefix-caching")  # the defaults, read as such
    plan = a.plan(
        tp=tp,
        pp=a.integer("--pipeline-parallel-size", "-pp", default=1),
        ep=tp if a.flag("--enable-expert-parallel") else 1,
        weight_dtype=weight,
        kv_dtype=kv,
        attention="flash3" if flash == "3" else "flash2",
        cuda_graphs=not a.flag("--enforce-eager"),
        max_batch=a.integer("--max-num-seqs", default=256),
        max_batch_tokens=a.integer("--max-num-batched-tokens", default=8192),
        block_size=a.integer("--block-size", default=16),
        memory_utilization=a.fraction("--gpu-memory-utilization", default=0.9),
        max_model_len=max_len,
        sliding_window=not a.flag("--disable-sliding-window"),
    )
    setup = ServingSetup(
        plan=plan,
        scheduler="continuous" if a.flag("--no-enable-chunked-prefill") else "chunked-prefill",
        prefix_caching=not a.flag("--no-enable-prefix-caching"),
    )
    a.unread(UNREAD, NO_EFFECT)
    return ImportedServing(setup=setup, model=model, warnings=a.warnings)


ENGINE = ServingEngine(name="vllm", title="vLLM", doc_url=DOC_URL, write=write, read=read)
