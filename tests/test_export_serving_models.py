"""Serving exports name the checkpoint the engine downloads: a preset's Hugging Face repository, never the preset's
own name (unless it has none, which is warned); a misspelt preset is an error with the closest names."""

from __future__ import annotations

import pytest

from fathom.catalog.models import get_model, list_models
from fathom.cli.app import run
from fathom.export import ServingSetup, export_serving_plan, import_serving
from fathom.export.model_names import HF_REPOS, resolve_model_name, serving_model
from fathom.specs.serving import ServingPlan

SERVE = ["plan", "serve", "--model", "llama-3.1-8b", "--gpus", "h100-sxm", "--rate", "50", "--input-len", "512",
         "--output-len", "64", "--slo-ttft", "0.5", "--slo-tpot", "0.05", "--duration", "3", "--tp", "1", "--pp", "1",
         "--precision", "bf16", "--max-batch", "64", "--max-batch-tokens", "2048", "--no-disaggregate"]  # fmt: skip


@pytest.mark.parametrize(("preset", "repo"), sorted(HF_REPOS.items()))
def test_each_repo_is_the_one_its_preset_cites_and_reads_back(preset, repo):
    assert preset in list_models()
    assert repo in get_model(preset).source  # the preset's shape comes from this repo's config.json
    assert resolve_model_name(repo) == preset


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_presets_export_as_their_hugging_face_repo(engine):
    text, warnings = export_serving_plan(ServingSetup(plan=ServingPlan(tp=8)), "llama-3.1-70b", engine)
    assert "meta-llama/Llama-3.1-70B" in text and "llama-3.1-70b" not in text and warnings == []
    back = import_serving(engine, text)
    assert back.model == "meta-llama/Llama-3.1-70B" and resolve_model_name(back.model) == "llama-3.1-70b"


@pytest.mark.parametrize("engine", ["vllm", "sglang"])
def test_presets_without_a_public_checkpoint_keep_their_name_and_warn(engine):
    assert "gpt3-175b" not in HF_REPOS
    text, warnings = export_serving_plan(ServingSetup(plan=ServingPlan(tp=8)), "gpt3-175b", engine)
    assert "gpt3-175b" in text
    assert any(w.startswith("model:") and "no public Hugging Face checkpoint" in w for w in warnings)


def test_repo_ids_and_paths_pass_through():
    assert serving_model("org/my-finetune") == ("org/my-finetune", None)
    assert serving_model("/ckpt/llama") == ("/ckpt/llama", None)
    assert serving_model("Llama-3.1-8B")[0] == "meta-llama/Llama-3.1-8B"  # presets are case-insensitive


def test_plan_serve_exports_a_downloadable_model(capsys):
    assert run([*SERVE, "--export", "vllm"]) == 0
    assert "vllm serve meta-llama/Llama-3.1-8B " in capsys.readouterr().out
    assert run([*SERVE, "--export", "sglang"]) == 0
    assert "--model-path meta-llama/Llama-3.1-8B " in capsys.readouterr().out


def test_cli_export_serve_rejects_a_misspelt_preset(capsys):
    assert run(["export", "serve", "--engine", "vllm", "--model", "llama-3.1-8bb"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert "--model" in captured.err and "'llama-3.1-8b'" in captured.err


def test_cli_export_serve_takes_repo_ids_and_local_folders(tmp_path, monkeypatch, capsys):
    assert run(["export", "serve", "--engine", "sglang", "--model", "Qwen/Qwen3-8B"]) == 0
    assert "--model-path Qwen/Qwen3-8B" in capsys.readouterr().out
    (tmp_path / "ckpt").mkdir()
    monkeypatch.chdir(tmp_path)
    assert run(["export", "serve", "--engine", "vllm", "--model", "ckpt"]) == 0  # a folder here, not a typo
    assert "vllm serve ckpt " in capsys.readouterr().out
    assert run(["export", "serve", "--engine", "vllm", "--model", "llama-3.1-8b"]) == 0
    assert "vllm serve meta-llama/Llama-3.1-8B " in capsys.readouterr().out
