"""Time of one kernel class on one device: GEMMs, fused attention, memory-bound elementwise kernels.

The efficiency model belongs to the device, not to a workload:
- a GEMM reaches the device's measured maximum-achievable matmul rate (``efficiency.gemm``) times a shape
  utilisation: output tiles are spread over the compute units in waves, and a partly filled last wave
  idles the rest (wave quantisation, NVIDIA "Matrix Multiplication Background" guide). Like cuBLAS, we take the
  best of several tile shapes, smaller tiles paying their lower data reuse. A short reduction dimension
  pays the pipeline fill of the K loop. The roofline bound (bytes / achievable HBM bandwidth) applies too.
- fused attention (FlashAttention 1/2/3) runs at its kernel class's ``efficiency.attention`` share of peak for
  long sequences;
  its backward does 2.5x the forward matmul work (five GEMMs instead of two).
- a CPU's GEMM (``efficiency.gemm_packs_weights``, set by a CPU profile) packs its weight operand (a pass over
  the weights plus a cost per weight row) and computes every row at the full rate, with no tile waves (Goto &
  van de Geijn 2008); the two partly overlap: (compute^p + packing^p)^(1/p), p = ``efficiency.gemm_overlap``;
- memory-bound kernels move bytes at ``efficiency.memory`` of HBM bandwidth.
Every kernel also pays a fixed launch/tail cost (``efficiency.kernel_launch_us``; a GEMM the per-call cost a CPU
profile measured for its dtype, ``efficiency.gemm_call_us``, where present).
"""

from __future__ import annotations

import numpy as np

from fathom.specs.hardware import BACKWARD_WORK, DeviceSpec

# (tile_m, tile_n, intrinsic efficiency relative to the largest tile): smaller tiles reuse less data; the
# 16- and 32-row tiles are the skinny-GEMM kernels (MARLIN, cuBLAS small-M) that decode batches run on.
_TILES = ((256, 128, 1.0), (128, 128, 0.94), (128, 64, 0.82), (64, 64, 0.66), (32, 128, 0.6), (16, 128, 0.5))
_K_FILL = 64.0  # reduction length lost to the K-loop prologue/epilogue (one 64-wide k-step)
_ATTN_HALF_SEQ = 256.0  # sequence length at which fused attention runs at half its long-sequence rate

# glibc's malloc serves every request of at least DEFAULT_MMAP_THRESHOLD_MAX (4 MiB x sizeof(long): 32 MiB on 64-bit
# Linux; mallopt(3), M_MMAP_THRESHOLD) with a fresh mmap and unmaps it on free, so an eager CPU op writing an output
# this large touches new pages every time; smaller ones reuse the heap once the dynamic threshold has risen.
FRESH_MAPPING_BYTES = 32.0 * 2**20
BYTES = {"fp32": 4.0, "tf32": 4.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5}


def gemm_utilisation(device: DeviceSpec, m, n, k, batch=1.0) -> np.ndarray:
    """Fraction of the device's large-GEMM rate that ``batch`` (m x k) @ (k x n) products in one kernel reach.

    The output tiles of all products of a batched (or grouped) GEMM share the waves.
    """
    units = float(device.num_compute_units)
    best = np.zeros(np.broadcast(m, n, k, batch).shape)
    for tile_m, tile_n, intrinsic in _TILES:
        tiles = np.ceil(m / tile_m) * np.ceil(n / tile_n)
        waves = batch * tiles / units
        fill = waves / np.ceil(waves)
        useful = (m * n) / (tiles * tile_m * tile_n)  # padding of the edge tiles
        best = np.maximum(best, fill * useful * intrinsic)
    return best * k / (k + _K_FILL)


def linear_s(device: DeviceSpec, precision: str, m, n, k, batch=1.0, weight_bytes: float | None = None) -> np.ndarray:
    """Seconds for one kernel computing ``batch`` independent (m, k) x (k, n) products in ``precision``.

    ``batch`` > 1 is a batched or grouped GEMM (attention scores per head, experts of an MoE layer): the
    products share the waves and pay one launch. ``weight_bytes`` is the storage width of the (k, n) operand
    when it differs from the math precision: weight-only quantisation (int4/int8 weights, 16-bit math, as in
    MARLIN and AWQ) moves fewer bytes but multiplies at the 16-bit rate.
    """
    m, n, k = (np.maximum(np.asarray(x, dtype=float), 1.0) for x in (m, n, k))
    batch = np.asarray(batch, dtype=float)
    eff = device.efficiency
    rate = device.peak_flops_per_s(precision) * eff.gemm_fraction(precision)
    elem = BYTES.get(precision, 2.0)
    w_elem = elem if weight_bytes is None else weight_bytes
    stream = eff.gemm_memory.get(precision, eff.memory)  # measured skinny-GEMM streaming where profiled (CPU)
    fixed_us = eff.gemm_call_us.get(precision, eff.kernel_launch_us)  # a CPU's measured per-call cost, else launch
    fixed = fixed_us * 1e-6 + first_touch_s(device, batch * m * n * elem)
    if eff.gemm_packs_weights:  # a CPU: every row at the full rate, blended with the weights' packing pass
        compute = batch * 2.0 * m * n * k / (rate * k / (k + _K_FILL))
        row_s = eff.gemm_row_ns.get(precision, 0.0) * 1e-9
        packing = batch * n * (k * w_elem / (device.mem_bw_bytes_per_s * stream) + row_s)
        if (p := eff.gemm_overlap.get(precision)) is None:
            return np.maximum(compute, packing) + fixed
        return (compute**p + packing**p) ** (1.0 / p) + fixed
    compute = batch * 2.0 * m * n * k / (rate * gemm_utilisation(device, m, n, k, batch))
    memory = batch * ((m * k + m * n) * elem + k * n * w_elem) / (device.mem_bw_bytes_per_s * stream)
    return np.maximum(compute, memory) + fixed


def first_touch_s(device: DeviceSpec, nbytes) -> np.ndarray | float:
    """Seconds a new output of ``nbytes`` costs beyond writing reused memory: on a device with a measured
    ``first_touch_ns_per_byte`` (a CPU profile), outputs of ``FRESH_MAPPING_BYTES`` or more (a fresh mapping each
    time); elsewhere nothing (a GPU's caching allocator reuses its blocks)."""
    ns = device.efficiency.first_touch_ns_per_byte
    if not ns:
        return 0.0
    nbytes = np.asarray(nbytes, dtype=float)
    return np.where(nbytes >= FRESH_MAPPING_BYTES, nbytes * ns * 1e-9, 0.0)


def gemm_s(device: DeviceSpec, precision: str, m, n, k, batch=1.0) -> np.ndarray:
    """A GEMM whose operands are all stored in ``precision`` (training); see ``linear_s``."""
    return linear_s(device, precision, m, n, k, batch)


def attention_flops(batch, seq_q, seq_kv_avg, heads, head_dim_qk, head_dim_v) -> np.ndarray:
    """Forward matmul FLOPs of attention: Q K^T and P V over the keys each query actually attends to."""
    return 2.0 * batch * seq_q * seq_kv_avg * heads * (head_dim_qk + head_dim_v)


def attention_s(device: DeviceSpec, kernel: str, flops_fwd, seq_len, backward: bool = False) -> np.ndarray:
    """Seconds of fused attention forward (or backward: 2.5x the work) at that pass's rate on the device."""
    eff = device.efficiency
    seq = np.asarray(seq_len, dtype=float)
    share = eff.attention_pass_fraction(kernel, backward)  # forward and backward run at their own rates
    rate = device.peak_flops_per_s("bf16") * share * seq / (seq + _ATTN_HALF_SEQ)
    work = np.asarray(flops_fwd, dtype=float) * (BACKWARD_WORK if backward else 1.0)
    return work / rate + eff.kernel_launch_us * 1e-6


def decode_attention_s(device: DeviceSpec, precision: str, keys, heads, kv_heads, head_dim) -> np.ndarray:
    """Seconds of one decode attention kernel over ``keys`` cached tokens (summed over the batch): the larger of
    reading their K and V at the streamed bandwidth and, where a profile measured decode attention's rate
    (``efficiency.decode_attention``, a CPU), the query-key work of every query head at it."""
    eff = device.efficiency
    keys = np.asarray(keys, dtype=float)
    read = 2.0 * keys * kv_heads * head_dim * BYTES.get(precision, 2.0) / (device.mem_bw_bytes_per_s * eff.memory)
    work = decode_work_s(device, precision, attention_flops(1.0, 1.0, keys, heads, head_dim, head_dim))
    return np.maximum(read, work) + eff.kernel_launch_us * 1e-6


def decode_work_s(device: DeviceSpec, precision: str, flops) -> np.ndarray | float:
    """Seconds of decode attention's query-key ``flops`` at the rate a profile measured for ``precision``
    (``efficiency.decode_attention``); 0 where none was measured (its KV read alone prices it)."""
    share = device.efficiency.decode_attention.get(precision)
    return np.asarray(flops, dtype=float) / (device.peak_flops_per_s(precision) * share) if share else 0.0


def eager_elementwise_s(device: DeviceSpec, dtype: str, nbytes, kernels=1.0) -> np.ndarray:
    """Seconds for eager elementwise/norm ops on ``dtype`` activations at that dtype's measured share of the
    bandwidth (``efficiency.elementwise``, fitted by ``fathom profile``), else as ``memory_bound_s``."""
    eff = device.efficiency
    share = eff.elementwise.get(dtype, eff.memory)
    return (
        np.asarray(nbytes, dtype=float) / (device.mem_bw_bytes_per_s * share)
        + np.asarray(kernels, dtype=float) * eff.kernel_launch_us * 1e-6
    )


def memory_bound_s(device: DeviceSpec, nbytes, kernels=1.0) -> np.ndarray:
    """Seconds for elementwise/normalisation kernels that stream ``nbytes`` through HBM."""
    eff = device.efficiency
    return (
        np.asarray(nbytes, dtype=float) / (device.mem_bw_bytes_per_s * eff.memory)
        + np.asarray(kernels, dtype=float) * eff.kernel_launch_us * 1e-6
    )
