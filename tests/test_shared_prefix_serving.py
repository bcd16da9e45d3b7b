"""Hydragen in the simulator: decoders sharing a cached prefix attend to it once per batch."""

from __future__ import annotations

import pytest

from fathom.api.serving import Workload, simulate_serving
from fathom.errors import FathomInputError
from fathom.serving.workload import PrefixSpec
from fathom.specs.serving import ServingPlan

# An offline batch whose prompts all open with one long shared prefix (few-shot examples, a long document).
WORKLOAD = Workload(arrival="offline", num_requests=64, input_len="4200", output_len="128",
                    prefix=PrefixSpec(num_prefixes=1, prefix_len=4096, share=1.0))  # fmt: skip


def _run(shared: bool):
    plan = ServingPlan(max_batch=64, shared_prefix_attention=shared)
    return simulate_serving(model="llama-3.1-8b", gpu="h100-sxm", plan=plan, workload=WORKLOAD, prefix_caching=True)


def test_shared_prefix_attention_speeds_up_decoding_and_changes_nothing_else():
    base, hydragen = _run(False), _run(True)
    assert hydragen.report.completed == base.report.completed == 64
    assert hydragen.report.tpot_s.mean < 0.9 * base.report.tpot_s.mean  # 4k-token prefix read once, not 64 times
    assert hydragen.report.throughput.output_tokens_per_s > base.report.throughput.output_tokens_per_s
    assert hydragen.result.replicas[0].prefix_hit_tokens == base.result.replicas[0].prefix_hit_tokens


def test_the_lever_needs_prefix_caching():
    with pytest.raises(FathomInputError, match="--prefix-caching"):
        simulate_serving(model="llama-3.1-8b", gpu="h100-sxm", plan=ServingPlan(shared_prefix_attention=True),
                         workload=WORKLOAD)  # fmt: skip
