"""Hardware as data: a device (one GPU or GCD) and a system (how devices are wired into nodes and a fabric).

Catalog files use the units of datasheets (TFLOP/s, GiB, GB/s, W); the ``*_per_s`` / ``*_bytes`` properties give
SI values to the cost model, which never converts units itself.
"""

from __future__ import annotations

from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    model_validator,
)

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


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


def validate_or_explain(cls: type[BaseModel], data: dict, what: str) -> BaseModel:
    """Validate ``data`` into ``cls``; turn pydantic's report into one line naming the field."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or what
        raise FathomInputError(f"{what} field {loc}: {err['msg']}") from None


class DeviceEfficiency(_Frozen):
    """What fraction of the datasheet a real kernel reaches on this device (measured, with a source).

    ``gemm``: large-GEMM throughput / dense peak, per precision, from maximum-achievable-matmul measurements.
    ``memory``: streamed bandwidth / datasheet HBM bandwidth.
    ``attention``: fused attention forward+backward throughput / dense 16-bit peak, per kernel class (time-weighted
    over a training pass; ``attention_pass_fraction`` splits it into the forward and backward rates).
    """

    gemm: dict[str, float] = Field(default_factory=lambda: {"default": 0.75})
    memory: float = Field(0.85, gt=0, le=1)
    attention: dict[str, float] = Field(default_factory=lambda: {"flash2": 0.55})
    kernel_launch_us: float = Field(4.0, ge=0, description="fixed cost per kernel (launch + tail)")
    host_op_us: float = Field(
        HOST_OP_US_DEFAULT,
        ge=0,
        description="host-side cost to issue one op in an eager PyTorch stack; a layer cannot run faster "
        "than its ops can be issued (the CPU-bound floor of small models)",
    )
    gemm_memory: dict[str, float] = Field(
        default_factory=dict,
        description="per precision: share of the streamed bandwidth a GEMM's operand reads reach where measured "
        "(fathom profile: skinny GEMMs over weights larger than the caches, as in decoding); absent: memory",
    )
    optimizer: float | None = Field(
        None,
        gt=0,
        le=1,
        description="share of the streamed bandwidth the optimizer step reaches, where measured (fathom profile); "
        "None: the memory-bound share",
    )
    elementwise: dict[str, float] = Field(
        default_factory=dict,
        description="per activation dtype: share of the streamed bandwidth eager elementwise and norm ops reach "
        "where measured (fathom profile on a CPU: 16-bit ops convert to fp32 and back per element, so they move "
        "fewer bytes per second than fp32 ones); absent: memory",
    )
    loss_ns_per_element: dict[str, float] = Field(
        default_factory=dict,
        description="``fwd`` and ``bwd`` nanoseconds per logit of the fp32 softmax cross-entropy where measured "
        "(fathom profile on a CPU, whose cores compute each exp and log: several times the memory passes' time); "
        "absent: priced as memory passes, as on a GPU",
    )
    dropout_rng_ns_per_element: float | None = Field(
        None,
        ge=0,
        description="nanoseconds per element that dropout's random mask costs beyond its memory passes where "
        "measured (fathom profile on a CPU, whose cores draw each random number); absent: memory passes only",
    )
    first_touch_ns_per_byte: float | None = Field(
        None,
        ge=0,
        description="nanoseconds per byte a freshly mapped allocation costs to write, beyond writing a reused "
        "buffer (page faults and the kernel's zeroing), where measured (fathom profile on a CPU: glibc maps every "
        "allocation of 32 MiB or more afresh, fathom.costmodel.kernels.first_touch_s); absent: none",
    )
    source: str = "fathom defaults"

    gemm_sustained: float = Field(
        GEMM_SUSTAINED_DEFAULT,
        gt=0,
        le=1,
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
    peak_tflops: dict[str, PositiveFloat]  # dense (no 2:4 sparsity), per precision
    memory_gib: PositiveFloat
    mem_bw_GBps: PositiveFloat
    tdp_w: PositiveFloat
    num_compute_units: PositiveInt  # SMs (NVIDIA) or CUs (AMD): sets GEMM wave quantisation
    host_link_GBps: PositiveFloat = 32.0  # per direction, GPU <-> host (PCIe / C2C)
    # A CPU issues and executes each op on the same cores, so the per-op host cost adds to the op's time; a GPU
    # queues kernels and runs behind the host, so host cost only matters when it exceeds the device's work.
    ops_run_inline: bool = False
    # Memory every rank holds besides its tensors, where measured (fathom profile: on a CPU, the framework's code
    # and data pages a training step touches); None: a CUDA context and workspaces (RUNTIME_RESERVED_BYTES).
    runtime_reserved_gib: PositiveFloat | None = None
    default_system: str | None = None
    price_per_gpu_hour_usd: PositiveFloat | None = None
    efficiency: DeviceEfficiency = Field(default_factory=DeviceEfficiency)
    source: str

    @model_validator(mode="after")
    def _check(self) -> DeviceSpec:
        unknown = set(self.peak_tflops) - set(PRECISIONS)
        if unknown:
            raise ValueError(f"unknown precision {sorted(unknown)} (valid: {', '.join(PRECISIONS)})")
        return self

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
    gpus_per_node: PositiveInt
    scaleup_domain: PositiveInt | None = None  # GPUs sharing the intra-node tier (NVL72: 72)
    intra_node_bw_GBps: PositiveFloat
    intra_node_latency_us: PositiveFloat = 5.0
    intra_node_efficiency: float = Field(0.8, gt=0, le=1)
    inter_node_bw_GBps: PositiveFloat
    inter_node_latency_us: PositiveFloat = 10.0
    inter_node_efficiency: float = Field(0.8, gt=0, le=1)
    nvme_bw_GBps: PositiveFloat = 5.0  # per node, for ZeRO-Infinity offload
    host_memory_gib: PositiveFloat = 1024.0  # per node
    pue: PositiveFloat = 1.2
    source: str

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
    num_gpus: PositiveInt
