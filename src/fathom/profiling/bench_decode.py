"""A whole eager decode step of a small synthetic decoder, timed as ``fathom check serve`` times one.

The other cases time each kernel class alone, back to back on the same buffers. A decode step runs them in a row
over a model's weights and KV cache, and comes out slower than the sum of its parts so timed. On a CPU the kernels
run slower in a row (measured on the 2-core development VMs: 20-30% over checks of four model sizes, every kernel
class included, while the same GEMMs replayed back to back matched their cases); on a GPU a small batch's step is
bound by the host issuing its ops, which cost more in a model's sequence than the loop of tiny ops that times
``host_op_inference_us`` (H100 checks of four models, session 16: 18-35% slower than predicted). ``fit_serving_in_situ``
finds the scale that prices this probe at its measured step with the fitted device and keeps it as
``efficiency.serving_in_situ``, which the serving step model applies to an eager iteration (``step_model``). The
profile times it at both ends of each pass (a step is a fraction of a second, shorter than the host's spells).
The probe is its own shape, none of the check's presets, with weights larger than a CPU's last-level cache
share, as a decoding model's are.
"""

from __future__ import annotations

import statistics

from fathom.profiling.grids import Grid
from fathom.profiling.timing import Timer
from fathom.specs.model import ModelSpec

# Llama-style (RMSNorm, RoPE, SwiGLU, grouped KV heads, tied embeddings): 4.4M weights a layer, 34 MB in bf16 at
# three layers.
_PROBE = {
    "name": "decode-probe",
    "family": "synthetic",
    "source": "fathom profile's decode probe (fathom.profiling.bench_decode)",
    "hidden_size": 640,
    "num_heads": 10,
    "num_kv_heads": 2,
    "head_dim": 64,
    "ffn_size": 1792,
    "gated_mlp": True,
    "vocab_size": 6144,
    "tied_embeddings": True,
    "max_seq_len": 1024,
    "position_embedding": "rope",
    "norm_type": "rmsnorm",
}
PROBE_BATCH, PROBE_INPUT_LEN = 4, 64


def probe_spec(layers: int) -> ModelSpec:
    return ModelSpec.model_validate({**_PROBE, "num_layers": layers})


def bench_decode_step(grid: Grid, dtype: str, device: str, timer: Timer, tick) -> list[dict]:
    """The median decode step of ``grid.decode_probe_steps`` steps after a prefill of ``PROBE_BATCH`` prompts of
    ``PROBE_INPUT_LEN`` tokens, in ``dtype``; one untimed repeat first (the cache's and the weights' first touch),
    then the median over ``grid.repeats`` repeats, each on a fresh KV cache as the check runs them."""
    import torch

    from fathom.profiling.bench_kernels import torch_dtype
    from fathom.profiling.torch_model import Decoder

    spec = probe_spec(grid.decode_probe_layers)
    steps, dt = grid.decode_probe_steps, torch_dtype(dtype)
    torch.manual_seed(0)
    model = Decoder(spec, PROBE_INPUT_LEN + steps + 1).to(device=device, dtype=dt).eval()

    def repeats() -> float:
        medians = []
        for rep in range(1 + grid.repeats):
            model.allocate_cache(PROBE_BATCH, PROBE_INPUT_LEN + steps + 1, dt)
            prompts = torch.randint(0, spec.vocab_size, (PROBE_BATCH, PROBE_INPUT_LEN), device=device)
            out = {"tok": model.next_tokens(prompts, 0)}

            def step(i: int, out: dict = out) -> None:
                out["tok"] = model.next_tokens(out["tok"], PROBE_INPUT_LEN + i)

            times = [timer.phase(lambda i=i: step(i)) for i in range(steps)]
            if rep:
                medians.append(statistics.median(times))
        return statistics.median(medians)

    # the memory reference: a decode step mostly streams weights and KV, as the skinny GEMM cases do
    seconds, ref = timer.around("memory", repeats)
    tick()
    row = {"dtype": dtype, "layers": spec.num_layers, "batch": PROBE_BATCH, "input_len": PROBE_INPUT_LEN}
    return [{**row, "steps": steps, "seconds": seconds, **ref}]
