"""Activation CPU offloading: which stored activations leave the device and what their copies cost.

Megatron-Core's ``--cpu-offloading --cpu-offloading-num-layers N`` (Megatron-Bridge ``cpu_offloading_num_layers``)
hands each transformer layer of a ``TransformerBlock`` to Transformer Engine's ``get_cpu_offload_context``
(NVIDIA/Megatron-LM@23e00ed (core_v0.14.0): megatron/core/transformer/transformer_block.py); TE's
``AsyncDoubleBufferGroupOffloadHandler`` (NVIDIA/TransformerEngine@40c69e7 (v2.8):
transformer_engine/pytorch/cpu_offload.py) then:

- offloads the tensors the first N layers save for backward (the activations TE marks, not weights) to pinned host
  memory on a side stream (``d2h_stream``) during the forward pass. The copies are spread over the forward: the copy
  of offloaded layer i must finish after about (L - 1) / N further layers (``layer_window_map``), where the compute
  stream waits for it (``wait_stream``) and only then frees the layer's device copy;
- reloads them on a second side stream (``h2d_stream``) in the backward pass on the same windows, each one window
  ahead of that layer's backward, which waits for it.

So each copy overlaps about (L - 1) / N layers of compute, and only what exceeds that compute stays exposed, once on
the forward (offload) and once on the backward (reload). At the stage's peak (the start of the backward) the L - N
layers that are not offloaded are stored, plus the first reload, which starts before the last layer's backward:
one offloaded layer stays resident (``RESIDENT_OFFLOADED_LAYERS``; without ``--cpu-offloading-double-buffering``,
Megatron-Core's default, reloads go to fresh buffers freed after their layer's backward). Megatron-Core accepts
0 <= N < L, no pipeline parallelism and no recomputation with it (transformer_config.py); fathom's plan checks say so.
"""

from __future__ import annotations

import numpy as np

from fathom.specs.hardware import DeviceSpec
from fathom.training.finetune import frozen_in_stage
from fathom.training.plans import PlanArrays
from fathom.training.shapes import PlanShapes

# Offloaded layers whose activations are back on the device at the stage's peak: the reload that starts before the
# last layer's backward (TE v2.8 ``on_group_commit_backward``).
RESIDENT_OFFLOADED_LAYERS = 1.0


def offloaded_layers(p: PlanArrays, s: PlanShapes) -> np.ndarray:
    """Offloaded layers that store activations: the stage's first N, less the frozen leading ones (which store none)."""
    frozen = frozen_in_stage(p, s)
    return np.clip(p.activation_offload_layers - frozen, 0.0, np.maximum(s.layers_per_stage - frozen, 0.0))


def resident_layers(p: PlanArrays, s: PlanShapes, stored_layers: np.ndarray) -> np.ndarray:
    """Layers' worth of stored activations left on the device at the peak, out of ``stored_layers``."""
    leaving = np.maximum(offloaded_layers(p, s) - RESIDENT_OFFLOADED_LAYERS, 0.0)
    return np.maximum(stored_layers - leaving, 0.0)


def exposed_copy_s(
    device: DeviceSpec,
    p: PlanArrays,
    s: PlanShapes,
    layer_bytes: np.ndarray,
    layer_fwd_s: np.ndarray,
    layer_bwd_s: np.ndarray,
) -> np.ndarray:
    """Seconds per micro-batch that the offload and reload copies add beyond the compute they overlap.

    Each offloaded layer's ``layer_bytes`` cross the device's host link once per direction. TE spreads the N copies
    over the other L - 1 layers: floor((L - 1) / N) layers of compute per copy, one more for the first (L - 1) mod N
    of them; a copy longer than its window's compute stalls the compute stream by the difference.
    """
    n = offloaded_layers(p, s)
    copy = layer_bytes / device.host_link_bytes_per_s
    span = np.maximum(np.floor(s.layers_per_stage) - 1.0, 0.0)
    safe_n = np.maximum(n, 1.0)
    short = np.floor(span / safe_n)
    longer = span - short * safe_n  # copies whose window holds one more layer

    def stalls(layer_s: np.ndarray) -> np.ndarray:
        return longer * np.maximum(copy - (short + 1.0) * layer_s, 0.0) + (n - longer) * np.maximum(
            copy - short * layer_s, 0.0
        )

    return np.where(n > 0, stalls(layer_fwd_s) + stalls(layer_bwd_s), 0.0)
