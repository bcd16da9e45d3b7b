"""Host time of an eager inference engine that the GPU waits for, per iteration and per sequence.

An engine without CUDA graphs (vLLM before its PR #1926 of 2023-12-17, Sarathi-Serve's artifact) runs each
iteration as: schedule, prepare the inputs of every sequence in Python (tokens, positions, slot mappings, block
tables) and ship them to the workers, run the forward (kernels issued while the GPU runs behind,
``InferenceStepModel``'s issue floor), then sample and process every sequence's output on the host. The first and
last parts do not overlap the GPU, so they add to the step: ``host_step + host_seq * sequences``.

Fit (least squares on relative error, GPU time from ``InferenceStepModel`` with the host terms off): the 111
complete decode rows (``tpot_mean_s``) of the Splitwise artifact's profiles (Patel et al. ISCA'24,
github.com/Mutinifni/splitwise-sim data/perf_model.csv @8f99e7d: vLLM, eager, BLOOM-176B TP8 and Llama-2-70B
TP2/4/8 on DGX-A100 and DGX-H100, 1-64 sequences, 128-8192-token prompts): 9.9 ms per iteration and 0.304 ms
per sequence, MAE 7.0% on those rows (35.8% before, with a 50 us issue floor and no host terms). Held out:
Sarathi-Serve's Figure 2 decode batches (microsoft/sarathi-serve osdi-experiments/figure-2/decode.csv, Yi-34B TP2
on A100 PCIe) stay 39% too fast: that engine's host cost is ~2-3x vLLM's (~1 ms a sequence); and DeepSpeed-
FastGen's vLLM v0.2 baseline (claim 14) at one client runs a request in 2.66 s with this profile against the
3.8 s its paper measured (-30%), so the profile does not carry over to every eager vLLM setup. The issue floor's
per-op cost is not identified by the fit: any value up to 15 us per op gives the same optimum; the training-fitted
50 us (the device's ``host_op_us``) does not (it prices a Llama-2-70B decode at 56 ms where DGX-H100
measures 30 ms), so the profile takes 15 us, an upper bound rather than a measurement.

``sarathi-osdi24-eager``: Sarathi-Serve's artifact engine (a vLLM fork driving its GPU workers through Ray), fitted
the same way on its own Figure 2 decode batches (Yi-34B TP2 on two NVLink-paired A100 PCIe, 1-128 sequences at
~1k context; the vLLM profile's 15 us issue floor kept): 23.9 ms per iteration and 1.04 ms per sequence, MAE 8.4%
on those 8 rows (the vLLM profile: 25-50% too fast). It describes multi-GPU runs of that engine only: the paper's
own SLO definition (Table 3, Sec. 5.1: 5x a batch-32, 4k-context decode step) puts Mistral-7B on one A100 at
~20 ms a step, which the device's generic per-op floor already prices (20.7 ms) and this profile would triple.

The profiles are engine properties (``ServingPlan.host_profile``), not implied by ``cuda_graphs``: other eager
engines (DeepSpeed-FastGen, TensorRT-LLM's C++ runtime) have other host paths and stay ``generic`` (the device's
training-fitted per-op floor, no per-iteration or per-sequence terms) until measured.
"""

from __future__ import annotations

from fathom.specs.hardware import DeviceSpec
from fathom.specs.serving import ServingPlan

VLLM_EAGER_HOST_OP_US = 15.0
VLLM_EAGER_HOST_STEP_US = 9900.0
VLLM_EAGER_HOST_SEQ_US = 304.0
SARATHI_EAGER_HOST_STEP_US = 23900.0
SARATHI_EAGER_HOST_SEQ_US = 1040.0
# Per engine profile: (issue cost per op, host time per iteration, per sequence) in us; None: the device's host_op_us.
HOST_PROFILES: dict[str, tuple[float | None, float, float]] = {
    "generic": (None, 0.0, 0.0),
    "vllm-v0-eager": (VLLM_EAGER_HOST_OP_US, VLLM_EAGER_HOST_STEP_US, VLLM_EAGER_HOST_SEQ_US),
    "sarathi-osdi24-eager": (VLLM_EAGER_HOST_OP_US, SARATHI_EAGER_HOST_STEP_US, SARATHI_EAGER_HOST_SEQ_US),
}


def _us(plan: ServingPlan, field: str, index: int) -> float | None:
    value = getattr(plan, field)
    return value if value is not None else HOST_PROFILES[plan.host_profile][index]


def issue_op_s(plan: ServingPlan, device: DeviceSpec) -> float:
    """Seconds for the host to issue one op of the eager forward (the floor of an iteration without CUDA graphs)."""
    us = _us(plan, "host_op_us", 0)
    eff = device.efficiency
    own = eff.host_op_us if eff.host_op_inference_us is None else eff.host_op_inference_us
    return (own if us is None else us) * 1e-6


def host_step_s(plan: ServingPlan) -> float:
    """Seconds of host work per iteration the GPU waits for."""
    return float(_us(plan, "host_step_us", 1)) * 1e-6


def host_seq_s(plan: ServingPlan) -> float:
    """Seconds of host work per sequence of an iteration that the GPU waits for."""
    return float(_us(plan, "host_seq_us", 2)) * 1e-6
