"""Schema checks for the cited training-validation data (stdlib csv only).

The CSVs under ``src/fathom/validation/data`` are published measurements copied from their original
sources (see SOURCES.md there). These tests keep them machine-readable: exact columns, unique ids, valid
enums, positive numbers, parallel degrees that multiply to the GPU count, and complete rows that carry every
field the estimator needs.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from data_rows import assert_rows_cite_sources
from fathom.catalog.hardware import list_gpus, list_systems

DATA = Path(__file__).resolve().parents[1] / "src" / "fathom" / "validation" / "data"
TRAINING = DATA / "training_runs.csv"
VTRAIN = DATA / "vtrain_a100_single_node.csv"
SOURCES = DATA / "SOURCES.md"
CATALOG_MODELS = DATA.parents[1] / "catalog" / "data" / "models"
FILES = (TRAINING, VTRAIN)

COLUMNS = (
    "id,source,source_detail,model,num_layers,hidden_size,num_heads,num_kv_heads,ffn_size,vocab_size,gated_mlp,"
    "seq_len,global_batch,micro_batch,gpu,system,num_gpus,tp,pp,dp,cp,ep,vpp,sequence_parallel,zero,recompute,"
    "precision,schedule,attention_kernel,moe_dispatcher,overlap_moe_comm,moe_routing,async_tp_allreduce,zero3_gather,overlap_grad_reduce,dropout,flops,metric,value,complete,note"
).split(",")
# Columns added after the vTrain table was frozen: training_runs.csv carries them at the end, the vTrain file not.
TRAINING_ONLY = [
    "zero2_comm",
    "moe_router_fusion",
    "cuda_graphs",
    "pipeline_engine",
    "embedding_norm",
    "overlap_tp_comm",
    "overlap_param_gather",
    "activation_offload_layers",
    "fp8_saved_inputs",
    "balance_pipeline_ends",
]
SHAPE = ["num_layers", "hidden_size", "num_heads", "num_kv_heads", "ffn_size", "vocab_size", "gated_mlp"]
REQUIRED_IF_COMPLETE = SHAPE + [
    "gpu",
    "num_gpus",
    "tp",
    "pp",
    "dp",
    "micro_batch",
    "global_batch",
    "seq_len",
    "recompute",
]
INT_FIELDS = [
    "num_layers",
    "hidden_size",
    "num_heads",
    "num_kv_heads",
    "ffn_size",
    "vocab_size",
    "seq_len",
    "global_batch",
    "micro_batch",
    "num_gpus",
    "tp",
    "pp",
    "dp",
    "cp",
    "ep",
    "vpp",
]
ENUMS = {
    "gpu": set(list_gpus()),
    "system": set(list_systems()),
    "gated_mlp": {"true", "false"},
    "sequence_parallel": {"true", "false"},
    "zero": {"0", "1", "2", "3"},
    "recompute": {"none", "selective", "full"},
    "precision": {"bf16", "fp16", "fp8"},
    "schedule": {"1f1b", "interleaved", "zero-bubble"},
    "metric": {
        "step_time_s",
        "tflops_per_gpu",
        "tokens_per_s_per_gpu",
        "mfu_pct",
        "hfu_pct",
        "activation_memory_gib",
        "peak_memory_gib",
        "state_memory_gib",
    },
    "complete": {"yes", "no"},
    "attention_kernel": {"flash3", "flash2", "flash1", "unfused"},
    "moe_dispatcher": {"alltoall", "deepep"},
    "overlap_moe_comm": {"true", "false"},
    "moe_routing": {"balanced", "dropless"},
    "async_tp_allreduce": {"true", "false"},
    "zero3_gather": {"prefetch", "per-parameter-sync", "backward-post"},
    "zero2_comm": {"per-step", "per-unit"},
    "pipeline_engine": {"megatron", "deepspeed"},
    "embedding_norm": {"true", "false"},
    "moe_router_fusion": {"true", "false"},
    "cuda_graphs": {"none", "attn", "attn-moe-router", "full"},
    "overlap_grad_reduce": {"true", "false"},
    "overlap_tp_comm": {"true", "false"},
    "overlap_param_gather": {"true", "false"},
    "dropout": {"true", "false"},
    "flops": {"model", "model_causal", "hardware"},
}
# Enum columns that must always be filled; the others may be blank when the source does not say.
ALWAYS = {"metric", "complete", "attention_kernel", "dropout"}
MODEL_RE = re.compile(r"^(-|[a-z0-9][a-z0-9.\-]*)$")


def _read(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


@pytest.fixture(scope="module", params=FILES, ids=lambda p: p.name)
def table(request) -> tuple[Path, list[dict[str, str]]]:
    header, rows = _read(request.param)
    expected = COLUMNS + TRAINING_ONLY if request.param == TRAINING else COLUMNS
    assert header == expected, f"{request.param.name}: columns differ from the schema"
    assert rows, f"{request.param.name} is empty"
    return request.param, rows


def _int(row: dict[str, str], key: str) -> int | None:
    return int(row[key]) if row[key] != "" else None


def test_ids_unique_across_files():
    ids: list[str] = []
    for path in FILES:
        ids += [r["id"] for r in _read(path)[1]]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    assert not dupes, f"duplicate ids: {dupes[:10]}"
    bad = [i for i in ids if not re.fullmatch(r"[a-z0-9][a-z0-9.\-]*", i)]
    assert not bad, f"ids must be lower-case slugs: {bad[:10]}"


def test_every_row_has_a_source(table):
    path, rows = table
    assert_rows_cite_sources(rows)


def test_enums_valid(table):
    path, rows = table
    for r in rows:
        for key, allowed in ENUMS.items():
            value = r.get(key) or ""  # a TRAINING_ONLY column is absent from the vTrain file or a short row
            if value == "" and key not in ALWAYS:
                continue
            assert value in allowed, f"{r['id']}: {key}={value!r} not in {sorted(allowed)}"
        assert MODEL_RE.match(r["model"]), f"{r['id']}: model={r['model']!r} is not a preset slug or '-'"


def test_numbers_positive(table):
    path, rows = table
    for r in rows:
        for key in INT_FIELDS:
            if r[key] != "":
                assert re.fullmatch(r"\d+", r[key]), f"{r['id']}: {key}={r[key]!r} is not an integer"
                assert int(r[key]) > 0, f"{r['id']}: {key} must be positive"
        value = float(r["value"])
        assert value > 0, f"{r['id']}: value must be positive"
        if r["metric"].endswith("_pct"):
            assert value <= 100, f"{r['id']}: percentage above 100"


def test_activation_offload_layers_fit_a_stage(table):
    """Megatron-Core offloads 0 <= N < the layers of a stage, with pp 1 and no recomputation (transformer_config.py)."""
    path, rows = table
    for r in rows:
        value = r.get("activation_offload_layers") or ""
        if value == "":
            continue
        assert re.fullmatch(r"\d+", value), f"{r['id']}: activation_offload_layers={value!r} is not an integer"
        assert int(value) < int(r["num_layers"]), f"{r['id']}: activation_offload_layers must be below num_layers"
        assert r["pp"] == "1" and r["recompute"] == "none", f"{r['id']}: CPU offloading needs pp 1 and no recompute"


def test_parallel_degrees_multiply_to_gpu_count(table):
    path, rows = table
    for r in rows:
        tp, pp, dp, n = (_int(r, k) for k in ("tp", "pp", "dp", "num_gpus"))
        if None in (tp, pp, dp, n):
            continue
        cp = _int(r, "cp") or 1
        if tp * pp * dp * cp != n:
            assert "inconsistent" in r["note"].lower(), (
                f"{r['id']}: tp*pp*dp*cp = {tp * pp * dp * cp} != num_gpus {n} and the note does not flag it"
            )


def test_batch_divisible_by_micro_batch_times_dp(table):
    path, rows = table
    for r in rows:
        gbs, mbs, dp = (_int(r, k) for k in ("global_batch", "micro_batch", "dp"))
        if None in (gbs, mbs, dp):
            continue
        if gbs % (mbs * dp):
            assert "partial microbatch" in r["note"], (
                f"{r['id']}: global batch {gbs} is not a multiple of micro batch x dp ({mbs} x {dp})"
            )


def test_schedule_matches_virtual_stages(table):
    path, rows = table
    for r in rows:
        vpp = _int(r, "vpp")
        if vpp is not None and vpp > 1:
            assert r["schedule"] == "interleaved", f"{r['id']}: vpp={vpp} needs schedule=interleaved"
        if r["schedule"] == "interleaved" and vpp is not None:
            assert vpp > 1, f"{r['id']}: interleaved schedule with vpp={vpp}"


def test_shape_consistent(table):
    path, rows = table
    for r in rows:
        heads, kv = _int(r, "num_heads"), _int(r, "num_kv_heads")
        if heads and kv:
            assert kv <= heads and heads % kv == 0, f"{r['id']}: kv heads must divide heads"
        if any(r[k] == "" for k in SHAPE):
            assert r["complete"] == "no" and "shape" in r["note"].lower(), (
                f"{r['id']}: shape columns must be filled, or the row incomplete with the reason in note"
            )


def test_complete_rows_have_required_fields(table):
    path, rows = table
    for r in rows:
        if r["complete"] == "yes":
            missing = [k for k in REQUIRED_IF_COMPLETE if r[k] == ""]
            assert not missing, f"{r['id']}: complete row missing {missing}"
        else:
            assert r["note"].strip(), f"{r['id']}: incomplete row must say why in note"


def _preset_shapes() -> dict[str, dict[str, str]]:
    """Top-level ``key: value`` lines of the catalog's model presets (enough for the shape keys)."""
    presets = {}
    for path in sorted(CATALOG_MODELS.glob("*.yaml")):
        fields = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            m = re.match(r"^([a-z_]+):\s*([^#\s]+)", line)
            if m:
                fields[m.group(1)] = m.group(2)
        presets[path.stem] = fields
    return presets


def test_named_presets_exist_and_share_the_architecture():
    """``model`` names a preset only when layers/hidden/heads/kv heads/ffn/gating match (vocab may differ)."""
    if not CATALOG_MODELS.is_dir():
        pytest.skip("model catalog not present")
    presets = _preset_shapes()
    arch = ["num_layers", "hidden_size", "num_heads", "num_kv_heads", "ffn_size", "gated_mlp"]
    for path in FILES:
        for r in _read(path)[1]:
            if r["model"] == "-":
                continue
            assert r["model"] in presets, f"{r['id']}: model {r['model']!r} is not a catalog preset"
            preset = presets[r["model"]]
            got = {k: r[k] for k in arch}
            want = {k: preset.get(k, "") for k in arch}
            if want["num_kv_heads"] == "":
                want["num_kv_heads"] = want["num_heads"]
            assert got == want, f"{r['id']}: shape {got} differs from preset {r['model']} {want}"


def test_vtrain_single_node_file():
    _, rows = _read(VTRAIN)
    assert len(rows) == 1440
    for r in rows:
        assert r["complete"] == "yes" and r["metric"] == "step_time_s"
        assert int(r["num_gpus"]) <= 8 and r["gpu"] == "a100-80gb"
        assert r["id"] == "vtrain-single-" + r["source_detail"].split("config_val_single_")[1][:4]


def test_sources_documented():
    text = SOURCES.read_text(encoding="utf-8")
    sources = {r["source"] for path in FILES for r in _read(path)[1]}
    missing = sorted(s for s in sources if s not in text)
    assert not missing, f"sources without a section in SOURCES.md: {missing}"


def test_expected_coverage():
    _, rows = _read(TRAINING)
    ids = {r["id"] for r in rows}
    kor_steps = [r for r in rows if r["id"].startswith("korthikanti-") and r["metric"] == "step_time_s"]
    assert len(kor_steps) == 8, "Korthikanti Table 5 has 8 iteration-time rows"
    assert "bloom-176b-main-step" in ids
    assert sum(r["id"].startswith("narayanan-t1-") for r in rows) == 10
    assert sum(r["id"].startswith("narayanan-t2-") for r in rows) == 12


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_tflops_rows_say_which_flops(path):
    """Throughput in TFLOP/s is only comparable when we know whether recomputation was counted."""
    _, rows = _read(path)
    for r in rows:
        if r["metric"] == "tflops_per_gpu":
            assert r["flops"] in ("model", "model_causal", "hardware"), r["id"]
