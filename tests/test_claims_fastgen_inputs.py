"""The DeepSpeed-FastGen claim's shipped prompt lengths: the benchmark client's capped normal draw."""

from __future__ import annotations

from importlib import resources
from statistics import NormalDist

import numpy as np
import pytest
import yaml

from fathom.serving.lengths import parse_length_dist
from fathom.validation.claim_runners.serving import _length

CLAIMS = resources.files("fathom.validation").joinpath("data").joinpath("claims")


def test_prompt_quantiles_follow_the_clients_capped_normal_draw():
    dist = parse_length_dist(_length("empirical:claims/14-deepspeed-fastgen.prompt-tokens.txt"), "input length")
    values = np.asarray(dist.values)
    assert values.size == 1000 and values.max() == 4000 and values.min() >= 1  # MAX_PROMPT_LENGTH
    capped = np.mean([min(int(NormalDist(2600, 780).inv_cdf((i + 0.5) / 1000)), 4000) for i in range(1000)])
    assert values.mean() == capped and 2550 < values.mean() < 2600
    assert (values == 4000).mean() == pytest.approx(1 - NormalDist(2600, 780).cdf(4000), abs=2e-3)


def test_both_engines_run_without_cuda_graphs_and_the_client_counts_match_the_benchmark():
    fig = yaml.safe_load(CLAIMS.joinpath("14-deepspeed-fastgen.yaml").read_text())["figures"][0]
    assert fig["baseline"]["cuda_graphs"] is False and fig["technique"]["cuda_graphs"] is False
    assert fig["common"]["clients"] == [1, 2, 4, 6, 8, 12, 16, 20, 24, 28, 32]  # run_benchmark_client.sh
