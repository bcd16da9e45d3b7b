"""Exported pipeline splits: every engine file puts no more layers on a pipeline rank than fathom priced
(ceil(num_layers / pp), fathom.training.shapes), in a form the engine accepts. Megatron-Core and torchtitan, where
installed, check the files with their own code."""

from __future__ import annotations

import tomllib

import pytest

from fathom.catalog.models import get_model
from fathom.cli.app import run
from fathom.export import export_training_plan, import_training
from fathom.export.cmdline import Options, parse_script
from fathom.export.engines.megatron import BARE_FLAGS, MULTI_FLAGS
from fathom.export.pipeline_split import (
    layer_chunks,
    megatron_split,
    megatron_stage_layers,
    parse_megatron_layout,
    priced_rank_layers,
    rank_layers,
    torchtitan_interleaved,
    torchtitan_stage_layers,
)
from fathom.specs.plan import TrainingPlan

GRID = [
    (layers, pp, vpp)
    for layers in (*range(2, 40), 61, 80, 94, 126)
    for pp in range(2, 17)
    for vpp in (1, 2, 3, 4)
    if pp * vpp <= layers
]


def _megatron_args(text: str) -> Options:
    words = parse_script(text).find("torchrun")[1]
    start = next(i for i, w in enumerate(words) if w.endswith("pretrain_gpt.py"))
    return Options(words[start + 1 :], "megatron", BARE_FLAGS, MULTI_FLAGS)


def _megatron_rank_layers(layers: int, pp: int, vpp: int) -> list[int]:
    split = megatron_split(layers, pp, vpp)
    if split.layout:
        chunks = parse_megatron_layout(split.layout)
        assert len(chunks) == pp * vpp and min(chunks) >= 1
        return rank_layers(chunks, pp)
    stages = megatron_stage_layers(layers, pp, split.first, split.last)
    assert stages is not None and all(n % vpp == 0 and n >= vpp for n in stages), (split, stages)
    return stages


def test_megatron_split_holds_what_fathom_priced():
    for layers, pp, vpp in GRID:
        ranks = _megatron_rank_layers(layers, pp, vpp)
        assert sum(ranks) == layers and max(ranks) <= priced_rank_layers(layers, pp), (layers, pp, vpp)


def test_megatron_split_prefers_uneven_ends_and_the_even_split():
    assert megatron_split(32, 4, 2).first is None and megatron_split(32, 4, 2).layout is None  # even
    assert megatron_split(32, 3, 1).first == 10 and megatron_split(32, 3, 1).last is None  # 10, 11, 11
    assert (megatron_split(61, 16, 1).first, megatron_split(61, 16, 1).last) == (2, 3)  # 2, 4 x 14, 3
    assert megatron_split(61, 16, 2).layout == "Ett|(tt|)*15,t|(tt|)*13,t|tL"  # no multiple-of-2 ends fit
    assert parse_megatron_layout("E|(t|)*3,tt*2|L") == [0, 1, 1, 1, 3, 0]  # x*n repeats one character


def test_layer_chunks_spread_the_remainder_over_ranks():
    chunks = layer_chunks(61, 16, 2)
    assert sum(chunks) == 61 and max(rank_layers(chunks, 16)) == 4
    assert chunks[0] <= max(chunks) and chunks[-1] == min(chunks)  # the ends are the lightest


def test_torchtitan_interleaving_settings():
    for layers, pp, vpp in GRID:
        found = torchtitan_interleaved(layers, pp, vpp) if vpp > 1 else None
        if found is None:
            continue  # the exporter names every stage's modules instead
        per_stage, first_less, last_less, fullest = found
        effective = layers + first_less + last_less
        assert -(-effective // per_stage) == pp * vpp  # torchtitan cuts exactly pp * vpp stages
        counts = torchtitan_stage_layers(layers, pp * vpp, first_less, last_less)
        assert sum(counts) == layers and max(rank_layers(counts, pp)) == fullest


@pytest.mark.parametrize(
    ("model", "change", "flags"),
    [
        ("llama-3.1-8b", dict(pp=3, dp=2), {"--decoder-first-pipeline-num-layers": "10"}),
        (
            "deepseek-v3",
            dict(pp=16, dp=1),
            {"--decoder-first-pipeline-num-layers": "2", "--decoder-last-pipeline-num-layers": "3"},
        ),
        (
            "deepseek-v3",
            dict(pp=16, vpp=2, dp=1, schedule="interleaved"),
            {"--pipeline-model-parallel-layout": "Ett|(tt|)*15,t|(tt|)*13,t|tL"},
        ),
        (
            "llama-3.1-70b",
            dict(pp=4, vpp=2, dp=1, schedule="interleaved"),
            {"--num-layers-per-virtual-pipeline-stage": "10"},
        ),
        (
            "llama-3.1-8b",
            dict(pp=2, dp=2, balance_pipeline_ends=True),
            {"--account-for-embedding-in-pipeline-split": True, "--account-for-loss-in-pipeline-split": True},
        ),
    ],
)
def test_megatron_export_writes_the_priced_split_and_reads_it_back(model, change, flags):
    spec = get_model(model)
    plan = TrainingPlan(seq_len=4096, global_batch=64, **change)
    text, warnings = export_training_plan(plan, spec, "megatron")
    args = _megatron_args(text)
    assert {k: args.values.get(k) for k in flags} == flags and warnings == []
    back = import_training("megatron", text, spec=spec)
    assert (back.plan.pp, back.plan.vpp, back.plan.balance_pipeline_ends) == (
        plan.pp,
        plan.vpp,
        plan.balance_pipeline_ends,
    )
    assert back.warnings == []


def test_megatron_import_names_a_split_megatron_refuses_or_fathom_did_not_price():
    head = "torchrun --nproc-per-node 6 pretrain_gpt.py --pipeline-model-parallel-size 3"
    spec = get_model("llama-3.1-8b")
    refused = import_training("megatron", head, spec=spec)
    assert any(w.startswith("pp: Megatron-Core cannot split 32 layers") for w in refused.warnings)
    heavy = import_training("megatron", head + " --decoder-first-pipeline-num-layers 16", spec=spec)
    assert "pp: the script puts 16 layers on a pipeline rank; fathom prices 11" in heavy.warnings


def test_cli_export_of_the_qa_plan_splits_unevenly(capsys):
    args = ["export", "train", "--engine", "megatron", "--model", "llama-3.1-8b", "--num-gpus", "6", "--pp", "3"]
    assert run([*args, "--seq-len", "4096", "--global-batch", "64"]) == 0
    out = capsys.readouterr().out
    assert "--pipeline-model-parallel-size 3" in out and "--decoder-first-pipeline-num-layers 10" in out


@pytest.mark.parametrize(
    ("change", "keys"),
    [
        (dict(pp=4, dp=2), {"pipeline_parallel_first_stage_less_layers": 0}),  # torchtitan's default 1 puts 9 on one
        (dict(pp=2, dp=2, balance_pipeline_ends=True), {"pipeline_parallel_first_stage_less_layers": 1}),
        (dict(pp=3, vpp=2, dp=2, schedule="interleaved"), {"pipeline_parallel_layers_per_stage": 6}),
        (dict(pp=7, vpp=2, dp=1, schedule="interleaved"), {"module_fqns_per_model_part": 14}),
    ],
)
def test_torchtitan_export_writes_the_priced_split(change, keys):
    spec = get_model("llama-3.1-8b")
    plan = TrainingPlan(seq_len=4096, global_batch=64, **change)
    text, warnings = export_training_plan(plan, spec, "torchtitan")
    par = tomllib.loads(text)["parallelism"]
    got = {k: len(par[k]) if isinstance(par.get(k), list) else par.get(k) for k in keys}
    assert got == keys and not any(w.startswith(("pp:", "vpp:")) for w in warnings)
    back = import_training("torchtitan", text, spec=spec)
    assert (back.plan.vpp, back.plan.balance_pipeline_ends) == (plan.vpp, plan.balance_pipeline_ends)
    assert back.warnings == []
    if fqns := par.get("module_fqns_per_model_part"):
        layers = [sum(m.startswith("layers.") for m in stage) for stage in fqns]
        assert max(rank_layers(layers, plan.pp)) <= priced_rank_layers(32, plan.pp)
        assert fqns[0][0] == "tok_embeddings" and fqns[-1][-2:] == ["norm", "output"]


def test_torchtitan_import_names_its_default_split_when_heavier():
    text = "[parallelism]\npipeline_parallel_degree = 4\ndata_parallel_shard_degree = 2\n"
    back = import_training("torchtitan", text, spec=get_model("llama-3.1-8b"))
    assert "pp: the config puts 9 layers on a pipeline rank; fathom prices 8" in back.warnings


def test_deepspeed_names_the_split_it_leaves_to_code():
    plan = TrainingPlan(seq_len=4096, global_batch=64, pp=3, dp=2)
    _, warnings = export_training_plan(plan, get_model("llama-3.1-8b"), "deepspeed")
    assert any(w.startswith("pp:") and "at most 11 of the 32 layers" in w for w in warnings)


# ---- the engines' own code, where installed ---------------------------------------------------------------------
@pytest.mark.parametrize(("layers", "pp", "vpp"), [g for g in GRID if g[0] in (9, 13, 32, 61, 80) and g[1] <= 8])
def test_megatron_core_builds_the_split(layers, pp, vpp):
    """Megatron-Core's TransformerConfig checks (uneven stages, layouts) and the layers each rank builds."""
    pytest.importorskip("megatron.core")
    torch = pytest.importorskip("torch")
    from megatron.core.transformer import TransformerConfig
    from megatron.core.transformer.enums import LayerType
    from megatron.core.transformer.transformer_block import get_num_layers_to_build

    split = megatron_split(layers, pp, vpp)
    config = TransformerConfig(
        num_layers=layers,
        hidden_size=64,
        num_attention_heads=4,
        pipeline_model_parallel_size=pp,
        virtual_pipeline_model_parallel_size=vpp if vpp > 1 and not split.layout else None,
        num_layers_in_first_pipeline_stage=split.first,
        num_layers_in_last_pipeline_stage=split.last,
        pipeline_model_parallel_layout=split.layout,
        pipeline_dtype=torch.float32,
    )
    if config.pipeline_model_parallel_layout is not None:
        built = [
            sum(chunk.count(LayerType.decoder) for chunk in rank)
            for rank in config.pipeline_model_parallel_layout.layout
        ]
        assert config.virtual_pipeline_model_parallel_size in (None, vpp)
    else:
        built = [
            sum(get_num_layers_to_build(config, vp_stage=v if vpp > 1 else None, pp_rank=r) for v in range(vpp))
            for r in range(pp)
        ]
    assert sum(built) == layers and max(built) <= priced_rank_layers(layers, pp)


@pytest.mark.parametrize(("layers", "pp", "vpp"), [g for g in GRID if g[0] in (13, 32, 61, 80)])
def test_torchtitan_cuts_the_stages_fathom_simulates(layers, pp, vpp):
    pytest.importorskip("torchtitan")
    from torchtitan.distributed.pipeline_parallel import generate_llm_fqn_per_model_part

    if vpp == 1:
        settings = [(pp, 0, 0)] + ([(pp, 1, 1)] if (layers + 2) % pp == 0 else [])
    else:
        found = torchtitan_interleaved(layers, pp, vpp)
        settings = [(pp * vpp, found[1], found[2])] if found else []
    for stages, first_less, last_less in settings:
        names = generate_llm_fqn_per_model_part(stages, layers, first_less, last_less)
        counts = [sum(m.startswith("layers.") for m in stage) for stage in names]
        assert counts == torchtitan_stage_layers(layers, stages, first_less, last_less)


def test_torchtitan_job_config_takes_module_names(tmp_path):
    pytest.importorskip("torchtitan")
    from importlib.metadata import version

    if tuple(int(x) for x in version("torchtitan").split(".")[:2]) >= (0, 3):
        pytest.skip("torchtitan >= 0.3 reads Python config functions, not job TOML files")
    from torchtitan.config import ConfigManager

    plan = TrainingPlan(seq_len=4096, global_batch=64, pp=7, vpp=2, dp=1, schedule="interleaved")
    path = tmp_path / "job.toml"
    path.write_text(export_training_plan(plan, get_model("llama-3.1-8b"), "torchtitan").text)
    cfg = ConfigManager().parse_args(["--job.config_file", str(path)])
    assert len(cfg.parallelism.module_fqns_per_model_part) == 14
