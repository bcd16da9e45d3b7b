"""What an imported model's results show: its parameter counts in `fathom train`, and why `fathom serve`
rejected requests."""

from __future__ import annotations

import io
import json

from rich.console import Console

from fathom.cli.app import run
from fathom.cli.render import render_serving
from fathom.serving.metrics import LatencyStats, ServingReport, Throughput

TRAIN = ["train", "--gpu", "h100-sxm", "--num-gpus", "8", "--seq-len", "2048", "--global-batch", "16"]
QWEN3_MOE = {
    "model_type": "qwen3_moe",
    "hidden_size": 2048,
    "intermediate_size": 6144,
    "moe_intermediate_size": 768,
    "num_experts": 128,
    "num_experts_per_tok": 8,
    "num_attention_heads": 32,
    "num_hidden_layers": 48,
    "num_key_value_heads": 4,
    "head_dim": 128,
    "vocab_size": 151936,
    "max_position_embeddings": 40960,
}


def test_train_reports_params_of_an_imported_config(tmp_path, capsys):
    folder = tmp_path / "Qwen3-30B-A3B"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(QWEN3_MOE))
    assert run([*TRAIN, "--model", str(folder), "--ep", "8", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["model"] == "qwen3-30b-a3b"
    assert abs(data["params"] / 30.5e9 - 1) < 0.01 and abs(data["active_params"] / 3.35e9 - 1) < 0.01
    assert {"step_time_s", "memory", "time_breakdown", "plan"} <= set(data)  # existing keys kept
    assert run([*TRAIN, "--model", str(folder), "--ep", "8"]) == 0
    out = capsys.readouterr().out
    assert "30.53B parameters" in out and "3.35B active per token" in out


def test_train_text_of_a_dense_preset_has_one_count(capsys):
    assert run([*TRAIN, "--model", "llama-3.1-8b"]) == 0
    out = capsys.readouterr().out
    assert "8.03B parameters (8,030,261,248)" in out and "active per token" not in out


def _report(rejected: int, reasons: dict[str, int]) -> ServingReport:
    empty = LatencyStats(p50=None, p90=None, p95=None, p99=None, mean=None)
    throughput = Throughput(requests_per_s=0.0, output_tokens_per_s=0.0, total_tokens_per_s=0.0)
    return ServingReport(
        ttft_s=empty,
        tpot_s=empty,
        itl_s=empty,
        e2e_s=empty,
        throughput=throughput,
        goodput_requests_per_s=0.0,
        completed=0,
        rejected=rejected,
        rejected_reasons=reasons,
        max_concurrency=0,
        kv_cache_gib=70.0,
        preemptions=0,
        gpu_seconds=None,
        energy_per_token_j=None,
        cost_per_million_tokens=None,
        duration_s=0.0,
    )


def _text(report: ServingReport) -> str:
    buffer = io.StringIO()
    render_serving(report, Console(file=buffer, width=160))
    return buffer.getvalue()


def test_serve_text_says_why_requests_were_rejected():
    out = _text(_report(15, {"input+output tokens exceed max_context 1024": 12, "[kv] does not fit": 3}))
    assert "Rejected requests" in out
    assert "input+output tokens exceed max_context 1024" in out and "12" in out
    assert "[kv] does not fit" in out  # reasons are text, not rich markup
    assert "Rejected requests" not in _text(_report(0, {}))
    assert "reason not recorded" in _text(_report(2, {}))


def test_serve_cli_prints_rejections(tmp_path, capsys):
    gpt2 = {"model_type": "gpt2", "n_embd": 768, "n_head": 12, "n_layer": 12, "n_positions": 1024, "vocab_size": 50257}
    (tmp_path / "config.json").write_text(json.dumps(gpt2))
    argv = ["serve", "--model", str(tmp_path), "--gpu", "h100-sxm", "--rate", "5", "--num-requests", "6"]
    assert run([*argv, "--input-len", "2000", "--output-len", "100"]) == 0
    out = capsys.readouterr().out
    assert "Rejected requests" in out and "exceed max_context 1024" in out
