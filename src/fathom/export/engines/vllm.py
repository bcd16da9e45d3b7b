"""vLLM: a ``vllm serve MODEL ...`` command.

Flags as documented in https://docs.vllm.ai/en/latest/configuration/engine_args.html (``EngineArgs``); the
FlashAttention version is vLLM's ``VLLM_FLASH_ATTN_VERSION`` environment variable
(https://docs.vllm.ai/en/latest/configuration/env_vars.html). vLLM V1 turns chunked prefill and prefix caching on
by default, so both are written explicitly either way. Expert parallelism (``--enable-expert-parallel``) spans the
TP group; it has no separate degree.
"""

from __future__ import annotations

from fathom.errors import FathomInputError
from fathom.export.base import ImportedServing, ServingSetup
from fathom.export.cmdline import Options, parse_script, render_command
from fathom.export.registry import ServingEngine
from fathom.export.serving_common import FROM_TORCH_DTYPE, common_notes, model_dtype, read_weights
from fathom.specs.model import ModelSpec
from fathom.specs.serving import ServingPlan

DOC_URL = "https://docs.vllm.ai/en/latest/configuration/engine_args.html"
_QUANT = {"fp8": "fp8", "int8": "gptq", "int4": "awq"}  # fp8: online W8A8; awq/gptq: pre-quantized checkpoints
BARE_FLAGS = (
    "--enforce-eager",
    "--enable-expert-parallel",
    "--enable-chunked-prefill",
    "--no-enable-chunked-prefill",
    "--enable-prefix-caching",
    "--no-enable-prefix-caching",
    "--trust-remote-code",
)


def write(setup: ServingSetup, model_name: str, spec: ModelSpec | None = None) -> tuple[str, dict]:
    p = setup.plan
    notes = common_notes(setup, "vLLM")
    opts: list[tuple[str, object]] = [("--tensor-parallel-size", p.tp), ("--pipeline-parallel-size", p.pp)]
    if p.ep > 1:
        opts.append(("--enable-expert-parallel", None))
        if p.ep != p.tp:
            notes["ep"] = f"vLLM's expert parallelism spans the TP group (ep = tp = {p.tp}), not ep={p.ep}"
    opts.append(("--dtype", model_dtype(setup)))
    if p.weight_dtype in _QUANT:
        opts.append(("--quantization", _QUANT[p.weight_dtype]))
    opts.append(("--kv-cache-dtype", "fp8" if p.kv_dtype == "fp8" else "auto"))
    opts += [
        ("--max-num-seqs", p.max_batch),
        ("--max-num-batched-tokens", p.max_batch_tokens),
        ("--enable-chunked-prefill" if setup.scheduler == "chunked-prefill" else "--no-enable-chunked-prefill", None),
        ("--enable-prefix-caching" if setup.prefix_caching else "--no-enable-prefix-caching", None),
        ("--block-size", p.block_size),
        ("--gpu-memory-utilization", p.memory_utilization),
    ]
    if not p.cuda_graphs:
        opts.append(("--enforce-eager", None))
    if p.attention == "flash1":
        notes["attention"] = "vLLM runs FlashAttention 2 or 3; wrote 2"
    env = {"VLLM_FLASH_ATTN_VERSION": "3" if p.attention == "flash3" else "2"}
    header = f"#!/usr/bin/env bash\n# vLLM server written by fathom for {model_name}. Flags: {DOC_URL}\n"
    return header + render_command(["vllm", "serve"], opts, env=env, positional=[model_name]), notes


def read(text: str) -> ImportedServing:
    source = "vllm arguments"
    script = parse_script(text if "\n" in text or "vllm" in text else f"vllm serve {text}")
    found = script.find("vllm", "vllm.entrypoints.openai.api_server")
    if found is None:
        raise FathomInputError(f"{source}: no `vllm serve` command found")
    env, words = found
    o = Options(words, source, BARE_FLAGS)
    after = o.positional[o.positional.index("serve") + 1 :] if "serve" in o.positional else []
    model = o.text("--model") or (after[0] if after else None)
    warnings: list[str] = []
    tp = o.number("--tensor-parallel-size", "-tp", default=1)
    dtype, weight = read_weights(o, source, warnings)
    kv = o.text("--kv-cache-dtype", default="auto")
    attention = (
        "flash3"
        if env.get("VLLM_FLASH_ATTN_VERSION", script.variables.get("VLLM_FLASH_ATTN_VERSION")) == "3"
        else "flash2"
    )
    plan = ServingPlan(
        tp=tp,
        pp=o.number("--pipeline-parallel-size", "-pp", default=1),
        ep=tp if o.flag("--enable-expert-parallel") else 1,
        weight_dtype=weight,
        kv_dtype="fp8" if kv.startswith("fp8") else dtype if kv == "auto" else FROM_TORCH_DTYPE.get(kv, dtype),
        attention=attention,
        cuda_graphs=not o.flag("--enforce-eager"),
        max_batch=o.number("--max-num-seqs", default=256),
        max_batch_tokens=o.number("--max-num-batched-tokens", default=8192),
        block_size=o.number("--block-size", default=16),
        memory_utilization=o.number("--gpu-memory-utilization", default=0.9, kind=float),
    )
    setup = ServingSetup(
        plan=plan,
        scheduler="continuous" if o.flag("--no-enable-chunked-prefill") else "chunked-prefill",
        prefix_caching=not o.flag("--no-enable-prefix-caching"),
    )
    return ImportedServing(setup=setup, model=model, warnings=warnings)


ENGINE = ServingEngine(name="vllm", title="vLLM", doc_url=DOC_URL, write=write, read=read)
