"""What the vLLM and SGLang command lines share: dtype words, quantisation, notes, and a reader of their flags that
range-checks numbers and names every flag it ignores or reads approximately."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pydantic import ValidationError

from fathom.errors import FathomInputError
from fathom.export.base import ServingSetup
from fathom.export.cmdline import Options
from fathom.specs.serving import ServingPlan

TORCH_DTYPE = {"bf16": "bfloat16", "fp16": "float16"}
FROM_TORCH_DTYPE = {"bfloat16": "bf16", "float16": "fp16", "half": "fp16", "auto": "bf16"}
# --dtype: vLLM ModelConfig.dtype (ModelDType) and SGLang ServerArgs.dtype take the same six words.
MODEL_DTYPES: tuple[str, ...] = ("auto", "half", "float16", "bfloat16", "float", "float32")
# fathom weight dtype -> --quantization (both engines): fp8 quantises online (W8A8); gptq/awq load pre-quantized
# checkpoints.
QUANT_FLAG = {"fp8": "fp8", "int8": "gptq", "int4": "awq"}
# Quantisation methods both vLLM and SGLang name with --quantization, as fathom's weight dtypes.
FROM_QUANT = {"fp8": "fp8", "awq": "int4", "awq_marlin": "int4", "gptq": "int4", "gptq_marlin": "int4"}
# Methods whose kernels take float16 activations only: vLLM AWQConfig.get_supported_act_dtypes and
# GPTQConfig.get_supported_act_dtypes return [torch.half], as does SGLang's AWQConfig on CUDA; the engines refuse
# --dtype bfloat16 with them. Their Marlin variants (awq_marlin, gptq_marlin) take float16 and bfloat16.
FLOAT16_ONLY_QUANT: tuple[str, ...] = ("awq", "gptq")

LORA = (
    "LoRA adapters are not part of an imported plan, which is priced without them "
    "(`fathom serve --lora-adapters N --max-loras-per-batch M` models them)"
)
SPECULATIVE = (
    "speculative decoding is not part of an imported plan, which is priced without it "
    "(`fathom serve --speculative` models it)"
)
DATA_PARALLEL = "fathom imports one replica; the command's data-parallel replicas each run this plan and are not priced"
CPU_OFFLOAD = "weight offloading to host memory is not imported; the plan is priced with every weight on the GPU"


def model_dtype(setup: ServingSetup) -> str:
    """The 16-bit activation dtype (``--dtype``): float16 for the float16-only AWQ and GPTQ kernels, else the
    weights' when 16-bit, else the KV cache's, else bf16."""
    p = setup.plan
    if QUANT_FLAG.get(p.weight_dtype) in FLOAT16_ONLY_QUANT:
        return "float16"
    if p.weight_dtype in TORCH_DTYPE:
        return TORCH_DTYPE[p.weight_dtype]
    return TORCH_DTYPE.get(p.kv_dtype, "bfloat16")


def common_notes(setup: ServingSetup, engine: str) -> dict[str, str]:
    notes: dict[str, str] = {}
    p = setup.plan
    if p.kv_free_fraction is not None:
        notes["kv_free_fraction"] = (
            f"{engine} sizes the KV cache from a share of total memory; wrote memory_utilization"
        )
    if p.weight_dtype == "int8":
        notes["weight_dtype"] = (
            f"{engine} takes weight-only INT8 from a pre-quantized checkpoint (e.g. GPTQ 8-bit), not a flag; "
            "wrote --quantization gptq: point the model at a GPTQ checkpoint"
        )
    if p.weight_dtype == "int4":
        notes["weight_dtype"] = (
            f"{engine} takes weight-only INT4 from a pre-quantized checkpoint (AWQ), not a flag; "
            "wrote --quantization awq: point the model at an AWQ checkpoint"
        )
    quant = QUANT_FLAG.get(p.weight_dtype)
    if quant in FLOAT16_ONLY_QUANT and p.kv_dtype == "bf16":
        notes["kv_dtype"] = (
            f"{engine}'s {quant.upper()} kernels take float16 activations only; wrote --dtype float16, so the KV "
            "cache is float16 (the same size as bf16)"
        )
    if setup.preemption == "swap":
        notes["preemption"] = f"{engine} recomputes preempted requests; it has no swap-to-host preemption"
    if setup.scheduler in ("static", "decode-priority"):
        notes["scheduler"] = f"{engine} has no {setup.scheduler} scheduler; wrote continuous batching"
    return notes


class FlagReader:
    """The flags of one engine command line: typed, range-checked reads that remember which flags were read, and
    ``warnings`` (``FLAG: reason`` lines) for every flag read approximately or not at all."""

    def __init__(self, options: Options, engine: str):
        self.o = options
        self.engine = engine
        self.read: set[str] = set()
        self.warnings: list[str] = []

    @property
    def source(self) -> str:
        return self.o.source

    def given(self, *names: str) -> str | None:
        """The spelling of the flag the command used among ``names`` (aliases), if any; marks them read."""
        self.read.update(names)
        return next((n for n in names if n in self.o.values), None)

    def warn(self, flag: str, reason: str) -> None:
        self.warnings.append(f"{flag}: {reason}")

    def flag(self, name: str) -> bool:
        self.read.add(name)
        return self.o.flag(name)

    def text(self, *names: str, default: str | None = None) -> str | None:
        self.read.update(names)
        return self.o.text(*names, default=default)

    def choice(self, names: tuple[str, ...], choices: Iterable[str], default: str) -> str:
        """A value that must be one of the engine's ``choices``; anything else is an input error listing them."""
        value = self.text(*names, default=default)
        valid = tuple(choices)
        if value not in valid:
            raise FathomInputError(
                f"{self.source}: {self.given(*names)} {value!r}: {self.engine}'s choices are {', '.join(valid)}"
            )
        return value

    def integer(self, *names: str, default: int | None, minimum: int = 1) -> int | None:
        value = self.o.number(*names, default=default)
        flag = self.given(*names)
        if flag is not None and value < minimum:
            raise FathomInputError(f"{self.source}: {flag} {value}: must be a whole number >= {minimum}")
        return value

    def fraction(self, *names: str, default: float) -> float:
        """A share of GPU memory: greater than 0, at most 1."""
        value = self.o.number(*names, default=default, kind=float)
        flag = self.given(*names)
        if flag is not None and not 0 < value <= 1:
            raise FathomInputError(f"{self.source}: {flag} {value:g}: must be a fraction in (0, 1]")
        return value

    def length(self, *names: str) -> int | None:
        """A context length: a whole number, or the engines' human-readable ``32k`` (x1000) / ``32K`` (x1024)."""
        raw = self.text(*names)
        if raw is None:
            return None
        flag = self.given(*names)
        scale = {"k": 1000, "m": 1000**2, "g": 1000**3, "K": 1024, "M": 1024**2, "G": 1024**3}.get(raw[-1:], 1)
        try:
            value = int(float(raw[:-1]) * scale) if scale > 1 else int(raw)
        except ValueError:
            raise FathomInputError(f"{self.source}: {flag} expects a whole number (or 32k, 32K), got {raw!r}") from None
        if value < 1:
            raise FathomInputError(f"{self.source}: {flag} {raw}: must be a whole number >= 1")
        return value

    def weights(self) -> tuple[str, str]:
        """``(16-bit model dtype, weight dtype)`` from ``--dtype`` and ``--quantization`` (spelt alike by vLLM and
        SGLang). float32 is read as bf16, with a warning; an unknown word is an error naming the choices."""
        raw = self.choice(("--dtype",), MODEL_DTYPES, "auto")
        quant = self.text("--quantization", "-q")
        if quant and quant not in FROM_QUANT:
            raise FathomInputError(f"{self.source}: --quantization {quant!r}: fathom knows {', '.join(FROM_QUANT)}")
        if raw in ("float", "float32"):
            self.warn("--dtype", f"fathom prices 16-bit weights and activations; read {raw} as bf16 (half the bytes)")
            dtype = "bf16"
        elif raw == "auto":
            # auto takes the checkpoint's dtype; AWQ and GPTQ checkpoints run in float16, the only dtype their
            # kernels take.
            dtype = "fp16" if quant in FLOAT16_ONLY_QUANT else "bf16"
        else:
            dtype = FROM_TORCH_DTYPE[raw]
        if quant in FLOAT16_ONLY_QUANT and dtype != "fp16":
            self.warn(
                "--dtype",
                f"{self.engine}'s {quant} kernels take float16 activations only; {self.engine} refuses --dtype {raw} "
                f"with --quantization {quant} (use float16, or {quant}_marlin)",
            )
        if quant and quant.startswith("gptq"):
            self.warn("--quantization", "GPTQ's bit width is in the checkpoint; read as 4-bit")
        return dtype, FROM_QUANT[quant] if quant else dtype

    def kv_cache(
        self, names: tuple[str, ...], dtype: str, kinds: Mapping[str, str | None], approx: Mapping[str, str]
    ) -> str:
        """fathom's KV dtype for the engine's cache dtype word: ``kinds`` maps the exact ones (None = the model's
        dtype), ``approx`` the ones fathom can only approximate (warned); anything else is an error."""
        value = self.choice(names, (*kinds, *approx), "auto")
        if value in approx:
            self.warn(self.given(*names), _KV_APPROX_REASON[approx[value]].format(value=value))
            return "fp8"
        return kinds[value] or dtype

    def unread(self, reasons: Mapping[str, str], no_effect: Iterable[str]) -> None:
        """Warn about every flag not read: ``reasons`` says why for the flags fathom knows of; ``no_effect`` are
        server, logging and tokenizer settings that change neither speed nor memory, passed over silently."""
        quiet = set(no_effect) | self.read
        for flag in self.o.values:
            if flag not in quiet:
                self.warn(flag, reasons.get(flag, f"fathom does not model this {self.engine} flag; ignored"))

    def plan(self, **fields) -> ServingPlan:
        """The plan; a value the flags' own checks let through still fails on one line."""
        try:
            return ServingPlan(**fields)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"])
            raise FathomInputError(f"{self.source}: {field}: {err['msg']}") from None


_KV_APPROX_REASON = {
    "8bit": "fathom prices {value} as an fp8 KV cache (one byte per element; its scales are not priced)",
    "narrow": "fathom's narrowest KV cache is fp8; read {value} as fp8 (about twice its bytes)",
}
