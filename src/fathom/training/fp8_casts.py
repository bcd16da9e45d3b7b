"""HBM traffic of FP8 training's quantisation kernels around each GEMM (Transformer Engine's FP8 linears).

FP8 GEMMs read FP8 operands, but activations, weights and gradients live in 16 bits (Micikevicius et al. 2022,
"FP8 Formats for Deep Learning", arXiv:2209.05433, Sec. 4): before every FP8 GEMM a kernel reads the 16-bit
tensor, finds its scale and writes it in FP8. Hopper's FP8 tensor-core GEMMs take only the "TN" layout
(cuBLASLt ``cublasLtMatmul`` FP8 requirements), so the same cast also writes a transposed FP8 copy for the other
GEMM that reads the tensor (Transformer Engine "Performance considerations: handling transposes";
``cast_transpose``); Blackwell's MXFP8 likewise keeps a row-wise and a column-wise quantised copy, their
block scales running along different axes. Per GEMM ``(m x k) @ (k x n)``:
- forward: the input (m x k) and the weight (k x n): read 2 B, write 1 B + 1 B transposed each;
- backward: the output gradient (m x n), the same 4 B per element; the forward's FP8 copies serve the rest.
The weight cast repeats every micro-batch: the frameworks do not keep FP8 weights between micro-batches
(Transformer Engine caches them only when told which micro-batch is the first).
"""

from __future__ import annotations

import numpy as np

from fathom.costmodel.kernels import memory_bound_s
from fathom.specs.hardware import DeviceSpec
from fathom.specs.plan import TRAIN_PRECISIONS

CAST_BYTES_PER_ELEMENT = 4.0  # read 2 (16-bit), write 1 (FP8) + 1 (FP8, transposed / column-wise)
# A GEMM input saved for backward in FP8: one byte per element, one copy (per-tensor scales are a few bytes).
FP8_SAVED_BYTES_PER_ELEMENT = 1.0


def saved_gemm_input_bytes(precision: np.ndarray, fp8_saved_inputs: np.ndarray, act_bytes: np.ndarray) -> np.ndarray:
    """Bytes per element of a linear's input that autograd keeps only for the weight-gradient GEMM.

    Transformer Engine's FP8 ``Linear`` and ``LayerNormLinear`` (the norm writes its output straight in FP8) save
    the quantised input in place of the 16-bit one, and a single copy: the column-wise (transposed) data, or the
    row-wise data when sequence parallelism re-gathers it in backward (NVIDIA/TransformerEngine v1.13
    ``module/linear.py`` forward, ``saved_inputmat``/``saved_inputmat_t``; v2.8 ``module/linear.py`` and
    ``module/layernorm_linear.py`` forward, ``update_usage(rowwise_usage=False)`` before ``save_for_backward``).
    MXFP8 adds one E8M0 scale per 32 elements (1/32 byte), left out: the plan does not name the FP8 recipe.
    torchao's ``Float8Linear`` saves the 16-bit input instead (``fp8_saved_inputs`` False).
    """
    fp8 = (precision == TRAIN_PRECISIONS.index("fp8")) & fp8_saved_inputs
    return np.where(fp8, FP8_SAVED_BYTES_PER_ELEMENT, act_bytes)


def fp8_cast_s(device: DeviceSpec, shape_sets: list[tuple[float | np.ndarray, list[tuple]]]) -> tuple:
    """Forward and backward seconds of the FP8 casts of a layer's GEMMs.

    ``shape_sets`` is a list of ``(share, [(m, n, k, batch), ...])``: GEMM lists with the share of layers (or
    weight) they apply to, e.g. dense and MoE MLPs mixed by the MoE layer fraction.
    """
    fwd_bytes = bwd_bytes = fwd_kernels = bwd_kernels = 0.0
    for share, shapes in shape_sets:
        for m, n, k, batch in shapes:
            fwd_bytes = fwd_bytes + share * batch * (m * k + k * n) * CAST_BYTES_PER_ELEMENT
            bwd_bytes = bwd_bytes + share * batch * m * n * CAST_BYTES_PER_ELEMENT
            fwd_kernels = fwd_kernels + 2.0 * share
            bwd_kernels = bwd_kernels + share
    return memory_bound_s(device, fwd_bytes, fwd_kernels), memory_bound_s(device, bwd_bytes, bwd_kernels)
