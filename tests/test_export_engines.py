"""Exported files parsed by the engines' own code, where the engine is installed (each test skips otherwise).

Installs that work on a CPU-only machine (Python 3.11; the CPU torch wheel first keeps pip off the CUDA build):
  pip install torch==2.13.0 deepspeed megatron-core        # DeepSpeedConfig; Megatron-Core TransformerConfig
  pip install torch==2.13.0 torchtitan==0.2.2 triton       # JobConfig TOML (torchtitan 0.3 reads Python configs)
Megatron-LM's own argument parser (megatron.training.arguments) is not on PyPI; with a Megatron-LM checkout on
PYTHONPATH the Megatron-LM test below runs too. vLLM and SGLang did not install within eight minutes here, so
their command lines are checked against the documented flags in tests/test_export.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fathom.catalog.models import get_model
from fathom.export import export_training_plan
from fathom.export.cmdline import Options, parse_script
from fathom.export.engines.megatron import BARE_FLAGS, MULTI_FLAGS
from fathom.specs.plan import TrainingPlan

SETTINGS = settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)


@st.composite
def plans(draw, spec):
    tp = draw(st.sampled_from([t for t in (1, 2, 4, 8) if spec.num_heads % t == 0 and spec.num_kv_heads % t in (0, t)]))
    pp, cp, dp, micro = (draw(st.sampled_from(v)) for v in ((1, 2, 3, 4), (1, 2), (1, 2, 4, 8), (1, 2)))
    vpp = draw(st.sampled_from((1, 2))) if pp > 1 else 1
    sequence_parallel = draw(st.booleans())
    experts = spec.moe.num_experts if spec.moe else 1
    ep = draw(st.sampled_from([e for e in (1, 2, 4, 8) if (tp * dp * cp) % e == 0 and experts % e == 0]))
    offload = draw(st.sampled_from(("none", "cpu", "nvme")))
    return TrainingPlan(
        seq_len=4096,
        global_batch=micro * dp * draw(st.integers(1, 4)),
        micro_batch=micro,
        tp=tp,
        pp=pp,
        dp=dp,
        cp=cp,
        ep=ep,
        vpp=vpp,
        schedule="interleaved" if vpp > 1 else "1f1b",
        sequence_parallel=sequence_parallel,
        balance_pipeline_ends=pp > 1 and (spec.num_layers + 2) % (pp * vpp) == 0 and draw(st.booleans()),
        overlap_tp_comm=sequence_parallel and draw(st.booleans()),
        overlap_p2p_comm=draw(st.booleans()),
        zero=draw(st.sampled_from((1, 2, 3) if offload != "none" else (0, 1, 2, 3))),
        offload=offload,
        recompute=draw(st.sampled_from(("none", "selective", "full"))),
        precision=draw(st.sampled_from(("bf16", "fp16", "fp8", "fp32"))),
        optimizer=draw(st.sampled_from(("adamw", "sgd", "adafactor", "adam-8bit"))),
    )


LLAMA, MIXTRAL = get_model("llama-3.1-70b"), get_model("mixtral-8x7b")


@SETTINGS
@given(data=st.data())
def test_deepspeed_config_class_accepts_the_file(data, monkeypatch):
    pytest.importorskip("deepspeed")
    import json

    from deepspeed.runtime import config as ds_config

    plan = data.draw(plans(MIXTRAL))
    config = json.loads(export_training_plan(plan, MIXTRAL, "deepspeed").text)

    class DataParallel:  # DeepSpeed checks the batch arithmetic against the data-parallel world size
        @staticmethod
        def get_data_parallel_world_size():
            return plan.dp

    monkeypatch.setattr(ds_config.dist, "get_rank", lambda *a, **k: 0)
    ds = ds_config.DeepSpeedConfig(config, mpu=DataParallel())
    assert (ds.train_batch_size, ds.train_micro_batch_size_per_gpu) == (plan.global_batch, plan.micro_batch)
    assert ds.gradient_accumulation_steps == plan.grad_accum_steps
    assert ds.zero_optimization_stage == plan.zero
    assert ds.bfloat16_config.enabled == (plan.precision in ("bf16", "fp8"))
    assert ds.float16_config.enabled == (plan.precision == "fp16")
    if plan.offload != "none":
        assert (
            str(getattr(ds.zero_config.offload_optimizer.device, "value", ds.zero_config.offload_optimizer.device))
            == plan.offload
        )


def _megatron_namespace(text: str) -> dict:
    """Megatron-LM argument names (dest) and values, as its argparse would give them."""
    words = parse_script(text).find("torchrun")[1]
    start = next(i for i, w in enumerate(words) if w.endswith("pretrain_gpt.py"))
    o = Options(words[start + 1 :], "megatron", BARE_FLAGS, MULTI_FLAGS)
    out = {}
    for flag, value in o.values.items():
        dest = flag[2:].replace("-", "_")
        out[dest] = value if isinstance(value, bool) else _number(value)
    return out


def _number(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


@pytest.mark.parametrize("spec", [LLAMA, MIXTRAL], ids=lambda s: s.name)
@SETTINGS
@given(data=st.data())
def test_megatron_core_transformer_config_accepts_the_arguments(spec, data):
    """Megatron-LM builds TransformerConfig from args field by field (core_transformer_config_from_args); its
    __post_init__ checks the parallel layout, recompute and MoE settings."""
    pytest.importorskip("megatron.core")
    import torch.nn.functional as F
    from megatron.core.transformer import TransformerConfig

    plan = data.draw(plans(spec))
    args = _megatron_namespace(export_training_plan(plan, spec, "megatron").text)
    names = {f.name for f in dataclasses.fields(TransformerConfig)}
    kw = {k: v for k, v in args.items() if k in names}
    kw["num_query_groups"] = args.get("num_query_groups", spec.num_heads)
    kw["add_bias_linear"] = not args.get("disable_bias_linear", False)
    kw["gated_linear_unit"], kw["activation_func"] = bool(args.get("swiglu")), F.silu if args.get("swiglu") else F.gelu
    kw["bf16"], kw["fp16"] = bool(args.get("bf16")), bool(args.get("fp16"))
    kw["fp8"] = args.get("fp8_format")
    if kw["fp8"] is not None and importlib.util.find_spec("transformer_engine") is None:
        assert kw.pop("fp8") in ("e4m3", "hybrid")  # FP8 checks need Transformer Engine, a CUDA build
    # Megatron-LM passes its params dtype on as the pipeline's p2p dtype (core_transformer_config_from_args).
    torch = pytest.importorskip("torch")
    kw["params_dtype"] = kw["pipeline_dtype"] = (
        torch.bfloat16 if kw["bf16"] else torch.float16 if kw["fp16"] else torch.float32
    )
    if "num_layers_per_virtual_pipeline_stage" in args:
        kw["virtual_pipeline_model_parallel_size"] = spec.num_layers // (
            plan.pp * args["num_layers_per_virtual_pipeline_stage"]
        )
    # Megatron-LM's argument names for the uneven pipeline (core_transformer_config_from_args renames them).
    kw["virtual_pipeline_model_parallel_size"] = args.get(
        "num_virtual_stages_per_pipeline_rank", kw.get("virtual_pipeline_model_parallel_size")
    )
    kw["num_layers_in_first_pipeline_stage"] = args.get("decoder_first_pipeline_num_layers")
    kw["num_layers_in_last_pipeline_stage"] = args.get("decoder_last_pipeline_num_layers")
    if spec.moe:
        kw.update(
            num_moe_experts=args["num_experts"],
            moe_router_topk=args["moe_router_topk"],
            moe_ffn_hidden_size=args["moe_ffn_hidden_size"],
        )
    config = TransformerConfig(**kw)
    assert (config.tensor_model_parallel_size, config.pipeline_model_parallel_size) == (plan.tp, plan.pp)
    assert (config.context_parallel_size, config.expert_model_parallel_size) == (plan.cp, plan.ep)
    assert config.num_layers == spec.num_layers and config.ffn_hidden_size == spec.ffn_size
    vpp = config.virtual_pipeline_model_parallel_size or 1
    if plan.pp > 1:  # the layers each rank builds: never more than fathom priced
        from megatron.core.transformer.enums import LayerType
        from megatron.core.transformer.transformer_block import get_num_layers_to_build

        if (layout := config.pipeline_model_parallel_layout) is not None:
            built = [sum(chunk.count(LayerType.decoder) for chunk in rank) for rank in layout.layout]
        else:
            built = [
                sum(get_num_layers_to_build(config, vp_stage=v if vpp > 1 else None, pp_rank=r) for v in range(vpp))
                for r in range(plan.pp)
            ]
        assert sum(built) == spec.num_layers and max(built) <= -(-spec.num_layers // plan.pp), built


def test_megatron_lm_argument_parser_accepts_the_script():
    """Runs only where Megatron-LM (not on PyPI) is importable, e.g. a checkout on PYTHONPATH."""
    arguments = pytest.importorskip("megatron.training.arguments")
    plan = TrainingPlan(
        seq_len=8192,
        global_batch=512,
        tp=8,
        pp=4,
        dp=4,
        ep=8,
        vpp=4,
        schedule="interleaved",
        precision="fp8",
        zero=3,
        moe_dispatcher="deepep",
        offload="cpu",
    )
    words = parse_script(export_training_plan(plan, get_model("deepseek-v3"), "megatron").text).find("torchrun")[1]
    start = next(i for i, w in enumerate(words) if w.endswith("pretrain_gpt.py"))
    parser = arguments.add_megatron_arguments(argparse.ArgumentParser(allow_abbrev=False))
    ns = parser.parse_args(words[start + 1 :])
    assert (ns.tensor_model_parallel_size, ns.expert_model_parallel_size, ns.fp8) == (8, 8, "hybrid")


@SETTINGS
@given(data=st.data())
def test_torchtitan_job_config_parses_the_toml(data, tmp_path_factory):
    torchtitan = pytest.importorskip("torchtitan")
    from importlib.metadata import version

    if tuple(int(x) for x in version("torchtitan").split(".")[:2]) >= (0, 3):
        pytest.skip("torchtitan >= 0.3 reads Python config functions, not job TOML files")
    from torchtitan.config import ConfigManager
    from torchtitan.distributed.parallel_dims import ParallelDims

    spec = get_model("deepseek-v3")
    plan = data.draw(plans(spec))
    path = Path(tmp_path_factory.mktemp("tt")) / "job.toml"
    path.write_text(export_training_plan(plan, spec, "torchtitan").text)
    cfg = ConfigManager().parse_args(["--job.config_file", str(path)])
    p = cfg.parallelism
    ParallelDims(
        dp_replicate=p.data_parallel_replicate_degree,
        dp_shard=p.data_parallel_shard_degree,
        cp=p.context_parallel_degree,
        tp=p.tensor_parallel_degree,
        pp=p.pipeline_parallel_degree,
        ep=p.expert_parallel_degree,
        etp=1,
        world_size=plan.num_gpus,
    )
    assert cfg.training.seq_len == plan.seq_len and cfg.training.global_batch_size == plan.global_batch
    assert tomllib.loads(path.read_text())["parallelism"]["tensor_parallel_degree"] == p.tensor_parallel_degree
    assert torchtitan is not None
