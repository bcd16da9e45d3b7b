"""Hardware as data: a device (one GPU or GCD) and a system (how devices are wired into nodes and a fabric).

Catalog files use the units of datasheets (TFLOP/s, GiB, GB/s, W); the ``*_per_s`` / ``*_bytes`` properties give
SI values to the cost model, which never converts units itself.
"""

from __future__ import annotations

import math
import numbers
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PositiveInt,
    StrictBool,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from fathom.errors import FathomInputError

Precision = Literal["fp32", "tf32", "bf16", "fp16", "fp8", "int8", "int4"]
PRECISIONS: tuple[str, ...] = ("fp32", "tf32", "bf16", "fp16", "fp8", "int8", "int4")
GIB = 1024**3
# Least-squares fit over the 1,440 vTrain iterations (Megatron-DeepSpeed, eager, one 8xA100 node; Bang et al.
# MICRO 2024): see ``fathom.validation.calibrate``. A property of the host software path, shared by devices.
HOST_OP_US_DEFAULT = 50.0
# Forward / backward rate of a fused-attention kernel class, where published: FlashAttention-2 on A100 peaks at 73%
# of peak forward and 63% backward (Dao 2023, arXiv:2307.08691, Sec. 4.1, Figs. 5-6); FlashAttention-1 runs at
# 30-50% forward and 25-35% backward (same paper, Sec. 1; midpoints); FlashAttention-3 forward reaches 75% on H100
# (Shah et al. 2024, arXiv:2407.08608) against the catalog's 0.6 training-pass share, so its backward runs at ~0.56
# (inferred: the catalog's own time-weighting). Kernel-class facts: a device's ``attention`` share stays the
# time-weighted training-pass figure and is split by this ratio (``DeviceEfficiency.attention_pass_fraction``).
ATTENTION_FWD_BWD_RATE = {"flash1": 40.0 / 30.0, "flash2": 73.0 / 63.0, "flash3": 1.35}
BACKWARD_WORK = 2.5  # FlashAttention backward: five GEMMs to the forward's two (fathom.costmodel.kernels)
# GEMMs inside a training step run below their isolated microbenchmark rate (sustained clocks under a full
# power budget, caches shared with the other kernels). Fitted jointly with HOST_OP_US_DEFAULT on vTrain.
GEMM_SUSTAINED_DEFAULT = 0.80


# Kernel classes a device's ``efficiency.attention`` may rate (``fathom.specs.plan.ATTENTION_KERNELS``).
ATTENTION_KERNEL_CLASSES: tuple[str, ...] = ("flash3", "flash2", "flash1", "unfused")


def _shown(value: object) -> str:
    """A rejected value as the user wrote it: YAML's ``true`` is a boolean, not the number 1."""
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    return repr(value) if isinstance(value, str) else str(value)


def _out_of_range(expected: str, value: object) -> PydanticCustomError:
    return PydanticCustomError(
        "number_range", "expected {expected}, got {value}", {"expected": expected, "value": _shown(value)}
    )


def _as_number(value: object) -> float | None:
    """A real number (ints and numeric strings, as CLI overrides give, included); None for booleans and the rest."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _ranged(lo: float, hi: float, lo_open: bool, hi_open: bool, expected: str) -> BeforeValidator:
    """A finite real number in a range: booleans, infinities, NaN and out-of-range values fail on one line that
    says the valid range (``expected``) and the value given."""

    def check(value: object) -> float:
        number = _as_number(value)
        if (
            number is None
            or not math.isfinite(number)
            or (number <= lo if lo_open else number < lo)
            or (number >= hi if hi_open else number > hi)
        ):
            raise _out_of_range(expected, value)
        return number

    return BeforeValidator(check)


def _count(value: object) -> int:
    """A positive integer (a whole float or numeric string too); a boolean is not 1."""
    number = _as_number(value)
    if number is None or not math.isfinite(number) or not number.is_integer() or number < 1:
        raise _out_of_range("a positive integer", value)
    return int(number)


Fraction = Annotated[float, _ranged(0.0, 1.0, True, False, "a number in (0, 1]")]
PositiveNumber = Annotated[float, _ranged(0.0, math.inf, True, True, "a finite number > 0")]
NonNegativeNumber = Annotated[float, _ranged(0.0, math.inf, False, True, "a finite number >= 0")]
Pue = Annotated[float, _ranged(1.0, 10.0, False, False, "a number in [1, 10]")]
OverlapExponent = Annotated[float, _ranged(1.0, 16.0, False, False, "a number in [1, 16]")]
InSituScale = Annotated[float, _ranged(0.25, 4.0, False, False, "a number in [0.25, 4]")]
Count = Annotated[PositiveInt, BeforeValidator(_count)]


def _known(valid: tuple[str, ...], what: str) -> AfterValidator:
    """A dict key from ``valid``; another fails naming the key and the valid ones."""

    def check(key: str) -> str:
        if key not in valid:
            raise PydanticCustomError(
                "unknown_key", "unknown {what} (valid: {valid})", {"what": what, "valid": ", ".join(valid)}
            )
        return key

    return AfterValidator(check)


PrecisionKey = Annotated[str, _known(PRECISIONS, "precision")]
GemmKey = Annotated[str, _known(("default", *PRECISIONS), "precision")]
AttentionKey = Annotated[str, _known(ATTENTION_KERNEL_CLASSES, "attention kernel class")]
LossKey = Annotated[str, _known(("fwd", "bwd"), "pass")]


class _Frozen(BaseModel):
    # allow_inf_nan=False: no float field of the hardware specs may be infinite or NaN (a safety net under the
    # range-checked types above, which say the valid range).
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, allow_inf_nan=False)


def validate_or_explain(cls: type[BaseModel], data: dict, what: str) -> BaseModel:
    """Validate ``data`` into ``cls``; turn pydantic's report into one line naming the field."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"] if p != "[key]")  # a bad dict key: name the key
        msg = err["msg"].removeprefix("Value error, ")
        if not loc:  # a whole-model check: it names its own flag (a CLI range) or field
            raise FathomInputError(msg if msg.startswith("--") else f"{what} {msg}") from None
        raise FathomInputError(f"{what} field {loc}: {msg}") from None


def _measured_table(description: str):
    """A per-key table of measured or fitted values, empty unless a profile or a device file gives it."""
    return Field(default_factory=dict, description=description)


class DeviceEfficiency(_Frozen):
    """What fraction of the datasheet a real kernel reaches on this device (measured, with a source).

    ``gemm``: large-GEMM throughput / dense peak, per precision, from maximum-achievable-matmul measurements.
    ``memory``: streamed bandwidth / datasheet HBM bandwidth.
    ``attention``: fused attention forward+backward throughput / dense 16-bit peak, per kernel class (time-weighted
    over a training pass; ``attention_pass_fraction`` splits it into the forward and backward rates).
    """

    gemm: dict[GemmKey, Fraction] = Field(default_factory=lambda: {"default": 0.75})
    memory: Fraction = 0.85
    attention: dict[AttentionKey, Fraction] = Field(default_factory=lambda: {"flash2": 0.55})
    kernel_launch_us: NonNegativeNumber = Field(4.0, description="fixed cost per kernel (launch + tail)")
    host_op_us: NonNegativeNumber = Field(
        HOST_OP_US_DEFAULT,
        description="host-side cost to issue one op in an eager PyTorch stack; a layer cannot run faster "
        "than its ops can be issued (the CPU-bound floor of small models)",
    )
    host_op_inference_us: NonNegativeNumber | None = Field(
        None,
        description="host-side cost to issue one op of an eager forward without autograd (serving), where "
        "measured (fathom profile on a GPU); None: host_op_us, which includes autograd's bookkeeping",
    )
    gemm_call_us: dict[PrecisionKey, NonNegativeNumber] = _measured_table(
        "per precision: a GEMM call's fixed cost beyond one dispatched op, where measured (fathom profile "
        "on a CPU: a minimal GEMM per call less a minimal op; oneDNN's bf16 path pays tens of microseconds, which "
        "decoding's skinny GEMMs feel); absent: kernel_launch_us",
    )
    decode_attention: dict[PrecisionKey, Fraction] = _measured_table(
        "per precision: share of that precision's peak that decode attention's query-key work reaches, "
        "where measured (fathom profile on a CPU, where one query per sequence gives its SDPA no reuse and the work, "
        "not the KV read, sets the time for grouped KV heads); absent: decode attention is priced by its KV read",
    )
    gemm_memory: dict[PrecisionKey, Fraction] = _measured_table(
        "per precision: share of the streamed bandwidth a GEMM's operand reads reach where measured "
        "(fathom profile: skinny GEMMs over weights larger than the caches, as in decoding); absent: memory",
    )
    gemm_packs_weights: bool = Field(
        False,
        description="a CPU's GEMM (fathom profile on a CPU): the library packs the weight operand into its blocked "
        "layout, a pass over the weights at the gemm_memory share of the bandwidth plus gemm_row_ns per weight row, "
        "and computes every row of the input at the full rate (no GPU tile waves: Goto & van de Geijn 2008, "
        "'Anatomy of high-performance matrix multiplication'); the two blend by gemm_overlap; false: a GPU's tile "
        "waves, the larger of compute and memory time",
    )
    gemm_row_ns: dict[PrecisionKey, NonNegativeNumber] = _measured_table(
        "per precision, with gemm_packs_weights: nanoseconds each weight row's pass costs beyond its "
        "bytes (each row's stream restarts: short rows stream slower), fitted to the profile's skinny GEMMs",
    )
    gemm_overlap: dict[PrecisionKey, OverlapExponent] = _measured_table(
        "per precision, with gemm_packs_weights: how far the row work hides under the weights' pass, "
        "the exponent p of (compute^p + pass^p)^(1/p) fitted to the profile's skinny GEMMs (1: the two add; "
        "large: the larger alone); absent: the larger alone",
    )
    serving_in_situ: dict[PrecisionKey, InSituScale] = _measured_table(
        "per weight precision: how much longer an eager serving iteration takes on this device than its parts "
        "as priced from the cases timed alone, where measured (fathom profile: the scale that prices a small "
        "synthetic decoder's decode step at its measured time, fathom.profiling.bench_decode); it multiplies a "
        "CPU's kernels and a GPU's host issue floor; absent: 1",
    )
    optimizer: Fraction | None = Field(
        None,
        description="share of the streamed bandwidth the optimizer step reaches, where measured (fathom profile); "
        "None: the memory-bound share",
    )
    optimizer_16bit: Fraction | None = Field(
        None,
        description="share of the streamed bandwidth the optimizer step reaches on 16-bit parameters with 16-bit "
        "moments and no fp32 master copy (pure 16-bit training), where measured (fathom profile): a CPU computes "
        "its step in fp32 and converts, so it streams slower than the fp32 step; None: optimizer",
    )
    elementwise: dict[PrecisionKey, Fraction] = _measured_table(
        "per activation dtype: share of the streamed bandwidth eager elementwise and norm ops reach "
        "where measured (fathom profile on a CPU: 16-bit ops convert to fp32 and back per element, so they move "
        "fewer bytes per second than fp32 ones); absent: memory",
    )
    loss_ns_per_element: dict[LossKey, NonNegativeNumber] = _measured_table(
        "``fwd`` and ``bwd`` nanoseconds per logit of the fp32 softmax cross-entropy where measured "
        "(fathom profile on a CPU, whose cores compute each exp and log: several times the memory passes' time); "
        "absent: priced as memory passes, as on a GPU",
    )
    dropout_rng_ns_per_element: NonNegativeNumber | None = Field(
        None,
        description="nanoseconds per element that dropout's random mask costs beyond its memory passes where "
        "measured (fathom profile on a CPU, whose cores draw each random number); absent: memory passes only",
    )
    first_touch_ns_per_byte: NonNegativeNumber | None = Field(
        None,
        description="nanoseconds per byte a freshly mapped allocation costs to write, beyond writing a reused "
        "buffer (page faults and the kernel's zeroing), where measured (fathom profile on a CPU: glibc maps every "
        "allocation of 32 MiB or more afresh, fathom.costmodel.kernels.first_touch_s); absent: none",
    )
    source: str = "fathom defaults"

    gemm_sustained: Fraction = Field(
        GEMM_SUSTAINED_DEFAULT,
        description="share of the isolated-GEMM rate that GEMMs keep inside a training step",
    )

    def attention_fraction(self, kernel: str) -> float:
        """Share of the 16-bit dense peak a fused-attention kernel class reaches over a training pass (fwd + bwd).

        Without a measurement: FlashAttention-1 runs at half FlashAttention-2 ("2x faster", Dao 2023 abstract),
        and a device with no FlashAttention-3 port runs the FlashAttention-2 kernel.
        """
        table = self.attention
        flash2 = table.get("flash2", 0.55)
        if kernel in table:
            return table[kernel]
        return 0.5 * flash2 if kernel == "flash1" else flash2

    def attention_pass_fraction(self, kernel: str, backward: bool = False) -> float:
        """Share of the 16-bit dense peak of the forward (or backward) pass alone: ``attention_fraction`` is the
        time-weighted training-pass share (1 unit of forward work, 2.5 of backward), split by the kernel class's
        forward/backward rate ratio ``r`` so a training pass keeps its time: fwd = c (1 + 2.5 r) / 3.5, bwd = fwd / r.
        Inference (prefill, shared-prefix attention) runs the forward kernel only."""
        c = self.attention_fraction(kernel)
        runs = kernel if kernel in self.attention or kernel != "flash3" else "flash2"  # no FA3 port: FA2 runs
        r = ATTENTION_FWD_BWD_RATE.get(runs, 1.0)
        fwd = c * (1.0 + BACKWARD_WORK * r) / (1.0 + BACKWARD_WORK)
        return fwd / r if backward else fwd

    def gemm_fraction(self, precision: str) -> float:
        """Achievable fraction of dense peak for a large GEMM inside a running step."""
        return self.gemm.get(precision, self.gemm.get("default", 0.75)) * self.gemm_sustained


class DeviceSpec(_Frozen):
    """One accelerator as the framework sees it (an MI250X GCD counts as one device, as Frontier exposes it)."""

    name: str
    vendor: str
    peak_tflops: dict[PrecisionKey, PositiveNumber]  # dense (no 2:4 sparsity), per precision
    memory_gib: PositiveNumber
    mem_bw_GBps: PositiveNumber
    tdp_w: PositiveNumber
    num_compute_units: Count  # SMs (NVIDIA) or CUs (AMD): sets GEMM wave quantisation
    host_link_GBps: PositiveNumber = 32.0  # per direction, GPU <-> host (PCIe / C2C)
    # A CPU issues and executes each op on the same cores, so the per-op host cost adds to the op's time; a GPU
    # queues kernels and runs behind the host, so host cost only matters when it exceeds the device's work.
    ops_run_inline: StrictBool = False
    # The software is eager PyTorch, op by op as fathom's reference model dispatches them (unfused norms and RoPE,
    # autograd's saved tensors, ``host_op_us`` per dispatched ATen op): what ``fathom profile`` measured on this
    # device and ``fathom check`` runs. False: a fused training/serving stack (Megatron, vLLM). A device that runs
    # its ops inline (a CPU) is always eager (``runs_eager``).
    eager_pytorch: StrictBool = False
    # Memory every rank holds besides its tensors, where measured (fathom profile: on a CPU, the framework's code
    # and data pages a training step touches); None: a CUDA context and workspaces (RUNTIME_RESERVED_BYTES).
    runtime_reserved_gib: PositiveNumber | None = None
    default_system: str | None = None
    price_per_gpu_hour_usd: PositiveNumber | None = None
    efficiency: DeviceEfficiency = Field(default_factory=DeviceEfficiency)
    source: str

    @classmethod
    def from_dict(cls, data: dict) -> DeviceSpec:
        return validate_or_explain(cls, data, "gpu")  # type: ignore[return-value]

    def peak_flops_per_s(self, precision: str) -> float:
        """Dense peak for ``precision``; fp8 on a device without it falls back to 16-bit (as engines do)."""
        for p in (precision, "bf16" if precision in ("fp8", "int8", "int4") else precision, "fp16"):
            if p in self.peak_tflops:
                return self.peak_tflops[p] * 1e12
        raise FathomInputError(
            f"precision: {self.name} has no {precision} rate (has: {', '.join(sorted(self.peak_tflops))})"
        )

    @property
    def runs_eager(self) -> bool:
        """Whether fathom prices this device's layers as eager PyTorch's (``fathom.training.eager``)."""
        return self.eager_pytorch or self.ops_run_inline

    @property
    def memory_bytes(self) -> float:
        return self.memory_gib * GIB

    @property
    def mem_bw_bytes_per_s(self) -> float:
        return self.mem_bw_GBps * 1e9

    @property
    def host_link_bytes_per_s(self) -> float:
        return self.host_link_GBps * 1e9


class SystemSpec(_Frozen):
    """Nodes of identical devices: a fast scale-up tier inside a node (or NVLink domain) and a scale-out fabric.

    Bandwidths are per GPU per direction. ``*_efficiency`` is the achieved collective bus bandwidth over the
    link rate (nccl-tests / rccl-tests busbw), a property of the fabric, not of any one workload.
    """

    name: str
    device: str
    gpus_per_node: Count
    scaleup_domain: Count | None = None  # GPUs sharing the intra-node tier (NVL72: 72)
    intra_node_bw_GBps: PositiveNumber
    intra_node_latency_us: PositiveNumber = 5.0
    intra_node_efficiency: Fraction = 0.8
    inter_node_bw_GBps: PositiveNumber
    inter_node_latency_us: PositiveNumber = 10.0
    inter_node_efficiency: Fraction = 0.8
    nvme_bw_GBps: PositiveNumber = 5.0  # per node, for ZeRO-Infinity offload
    host_memory_gib: PositiveNumber = 1024.0  # per node
    pue: Pue = 1.2  # power usage effectiveness: facility power / IT power, >= 1
    source: str

    @model_validator(mode="after")
    def _domain_holds_a_node(self) -> SystemSpec:
        if self.scaleup_domain is not None and self.scaleup_domain < self.gpus_per_node:
            size, node = self.scaleup_domain, self.gpus_per_node
            raise ValueError(f"field scaleup_domain: {size} is smaller than gpus_per_node ({node})")
        return self

    @classmethod
    def from_dict(cls, data: dict) -> SystemSpec:
        return validate_or_explain(cls, data, "system")  # type: ignore[return-value]

    @property
    def domain_size(self) -> int:
        return self.scaleup_domain or self.gpus_per_node

    @property
    def intra_bytes_per_s(self) -> float:
        return self.intra_node_bw_GBps * 1e9 * self.intra_node_efficiency

    @property
    def inter_bytes_per_s(self) -> float:
        return self.inter_node_bw_GBps * 1e9 * self.inter_node_efficiency


class Cluster(_Frozen):
    """A device in a system, ``num_gpus`` of them: the hardware side of every estimate."""

    device: DeviceSpec
    system: SystemSpec
    num_gpus: Count
