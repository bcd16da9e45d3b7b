"""Claims 07 / 11 / 12 levers: int4 weight-only GEMMs on the A10, the fleet-cost runner, serving power and caps."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fathom.catalog.hardware import resolve_cluster
from fathom.catalog.models import get_model
from fathom.costmodel.kernels import linear_s
from fathom.energy.serving_power import IterationPower, PowerMeteredCost, cluster_peak_w
from fathom.errors import FathomInputError
from fathom.inference.memory import WEIGHT_BYTES
from fathom.inference.step_model import InferenceStepModel
from fathom.specs.serving import ServingPlan
from fathom.validation.claim_runners.fleet import fleet_cost
from fathom.validation.claims import load_claims


@pytest.mark.parametrize("gpu", ["a10", "a10g"])
def test_a10_family_in_catalog_and_int4_never_slower_nor_past_the_byte_ratio(gpu):
    device = resolve_cluster(gpu, 1).device
    assert device.memory_gib == 24 and device.mem_bw_GBps == 600
    for b in (1, 16, 32, 64, 128):
        fp16 = float(linear_s(device, "fp16", b, 73728, 18432))
        int4 = float(linear_s(device, "fp16", b, 73728, 18432, weight_bytes=WEIGHT_BYTES["int4"]))
        assert int4 <= fp16
        assert fp16 / int4 <= 2.0 / WEIGHT_BYTES["int4"] + 1e-9  # at most the weight-byte ratio (3.88x)


def _metered(cap=None):
    plan = ServingPlan(tp=1)
    model = InferenceStepModel(get_model("llama-2-7b"), resolve_cluster("a100-80gb", 1), plan)
    return PowerMeteredCost(model, power_cap_w=cap)


def test_prefill_iterations_draw_more_than_decode_and_a_cap_slows_only_them():
    free, capped = _metered(), _metered(cap=300.0)
    decode = np.full(8, 512.0)
    t_dec = free.step_time_s([], [], decode)
    t_pre = free.step_time_s([4096], [0], [])
    power = free.iterations().power_w
    assert power[1] > power[0]
    assert power[1] == pytest.approx(free.profile.tdp_w)
    assert capped.step_time_s([], [], decode) == pytest.approx(t_dec)  # decode draws under the cap: untouched
    assert capped.step_time_s([4096], [0], []) > t_pre
    assert capped.iterations().power_w.max() <= 300.0 + 1e-9
    assert capped.throttled_s > 0
    assert free.kv_bytes_per_token == free._inner.kv_bytes_per_token  # everything else passes through


def test_cap_at_or_below_idle_is_an_input_error():
    with pytest.raises(FathomInputError, match="power-cap"):
        _metered(cap=10.0)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(0.01, 2.0), st.floats(80.0, 400.0)), min_size=1, max_size=30),
       st.floats(0.05, 5.0))  # fmt: skip
def test_windowed_peak_lies_between_mean_and_max_power(iters, window):
    d, p = (np.array(x) for x in zip(*iters, strict=True))
    it = IterationPower(d, p)
    peak = it.peak_window_w(window)
    # the window starting at t = 0 (or the whole run if shorter) is one of the windows the peak is taken over
    span = min(window, float(d.sum()))
    ends = np.concatenate([[0.0], np.cumsum(d)])
    first = float(np.interp(span, ends, np.concatenate([[0.0], np.cumsum(d * p)]))) / span
    assert first - 1e-6 <= peak <= p.max() + 1e-6
    group = cluster_peak_w([it, it], 80.0, window, 1)
    assert group <= 2 * p.max() + 1e-6


def test_melange_runner_prices_a_mixed_search_no_dearer_than_any_single_type():
    fig = next(f for c in load_claims() if c["id"] == "melange" for f in c["figures"])
    fig = {**fig, "rates": [1], "baselines": ["a10g", "h100-sxm"], "gpus": ["l4", "a10g", "h100-sxm"]}
    pairs, note = fleet_cost(fig)
    assert len(pairs) == 2 and "req/s" in note
    for single, mixed in pairs:
        assert mixed <= single + 1e-9


def test_power_oversubscription_runner_provisions_below_nameplate():
    from fathom.validation.claim_runners.power import oversubscription

    fig = dict(model="llama-2-7b", gpu="a100-80gb", tp=1, precision="bf16", rate=2.0, num_requests=40,
               input_len="512", output_len="32", window_s=1.0, servers=2)  # fmt: skip
    [(nameplate, peak)], note = oversubscription(fig)
    assert peak >= nameplate  # servers per watt: provisioning at the drawn peak never holds fewer servers
    assert "W per GPU" in note
