"""Schema checks for the cited serving-validation data (stdlib csv only).

``src/fathom/validation/data/serving_runs.csv`` holds published, measured LLM inference/serving results copied from
their original sources (see SERVING_SOURCES.md next to it). These tests keep it machine-readable: exact columns,
unique ids, valid enums, positive numbers, catalog names that exist, and complete rows that carry every field a
serving simulation needs.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from data_rows import assert_rows_cite_sources

DATA = Path(__file__).resolve().parents[1] / "src" / "fathom" / "validation" / "data"
SERVING = DATA / "serving_runs.csv"
SOURCES = DATA / "SERVING_SOURCES.md"
CATALOG = DATA.parents[1] / "catalog" / "data"

COLUMNS = (
    "id,source,source_detail,model,gpu,system,num_gpus,tp,pp,ep,replicas,weight_dtype,kv_dtype,engine,scheduler,"
    "cuda_graphs,max_batch,max_batch_tokens,mode,num_requests,rate,concurrency,input_len,output_len,input_dist,"
    "output_dist,metric,value,complete,note"
).split(",")
INT_FIELDS = [
    "num_gpus",
    "tp",
    "pp",
    "ep",
    "replicas",
    "max_batch",
    "max_batch_tokens",
    "num_requests",
    "concurrency",
    "input_len",
    "output_len",
]
THROUGHPUT_METRICS = {
    "output_tokens_per_s",
    "total_tokens_per_s",
    "requests_per_s",
    "output_tokens_per_s_per_gpu",
    "decode_tokens_per_s",
}
LATENCY_METRICS = {
    "ttft_p50_s",
    "ttft_mean_s",
    "ttft_p99_s",
    "tpot_mean_s",
    "tpot_p50_s",
    "itl_p50_s",
    "e2e_p50_s",
    "e2e_mean_s",
}
ENUMS = {
    "weight_dtype": {"bf16", "fp16", "fp8", "int8", "int4"},
    "kv_dtype": {"bf16", "fp16", "fp8"},
    "engine": {"tensorrt-llm", "vllm", "sglang", "gpt-fast", "deepspeed-fastgen", "sarathi-serve"},
    "scheduler": {"continuous", "chunked-prefill", "static"},
    "cuda_graphs": {"true", "false"},
    "mode": {"offline", "rate", "concurrency", "batch"},
    "metric": THROUGHPUT_METRICS | LATENCY_METRICS,
    "complete": {"yes", "no"},
}
# Enum columns that must always be filled; the others may be blank when the source does not say.
ALWAYS = {"metric", "complete"}
# What a serving simulation needs before a row can be compared with the estimator.
REQUIRED_IF_COMPLETE = [
    "model",
    "gpu",
    "num_gpus",
    "tp",
    "pp",
    "ep",
    "replicas",
    "weight_dtype",
    "kv_dtype",
    "engine",
    "scheduler",
    "mode",
]
MODE_NEEDS = {"offline": "num_requests", "rate": "rate", "concurrency": "concurrency", "batch": "concurrency"}
NUM = r"[0-9]+(\.[0-9]+)?"
PARAMETRIC_DIST = re.compile(rf"^(uniform|normal|lognormal|exponential):[a-z_]+={NUM}(,[a-z_]+={NUM})*$")
DATASET_DIST = re.compile(r"^dataset:[a-z0-9_\-]+$")
SLUG = re.compile(r"^[a-z0-9][a-z0-9.\-]*$")


def _read(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    header, rows = _read(SERVING)
    assert header == COLUMNS, "serving_runs.csv: columns differ from the schema"
    assert rows, "serving_runs.csv is empty"
    return rows


def _catalog_names(kind: str) -> set[str]:
    return {p.stem for p in (CATALOG / kind).glob("*.yaml")}


def test_ids_unique_slugs(rows):
    ids = [r["id"] for r in rows]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    assert not dupes, f"duplicate ids: {dupes[:10]}"
    bad = [i for i in ids if not SLUG.match(i)]
    assert not bad, f"ids must be lower-case slugs: {bad[:10]}"


def test_every_row_has_a_source(rows):
    assert_rows_cite_sources(rows)


def test_sources_documented(rows):
    text = SOURCES.read_text(encoding="utf-8")
    headings = {line[3:].strip() for line in text.splitlines() if line.startswith("## ")}
    missing = sorted({r["source"] for r in rows} - headings)
    assert not missing, f"sources without a '## <source>' section in SERVING_SOURCES.md: {missing}"


def test_enums_valid(rows):
    for r in rows:
        for key, allowed in ENUMS.items():
            value = r[key]
            if value == "" and key not in ALWAYS:
                continue
            assert value in allowed, f"{r['id']}: {key}={value!r} not in {sorted(allowed)}"


def test_catalog_names_exist(rows):
    models, gpus, systems = _catalog_names("models"), _catalog_names("gpus"), _catalog_names("systems")
    assert models and gpus and systems, "catalog not found"
    for r in rows:
        assert r["model"] == "-" or r["model"] in models, f"{r['id']}: model {r['model']!r} is not a catalog preset"
        assert r["gpu"] in gpus, f"{r['id']}: gpu {r['gpu']!r} is not a catalog GPU"
        assert r["system"] == "" or r["system"] in systems, f"{r['id']}: system {r['system']!r} not in the catalog"


def test_system_holds_the_gpu(rows):
    """A named system must be built from the row's GPU (``device:`` in the system preset)."""
    device = {}
    for path in (CATALOG / "systems").glob("*.yaml"):
        m = re.search(r"^device:\s*([^#\s]+)", path.read_text(encoding="utf-8"), re.M)
        if m:
            device[path.stem] = m.group(1)
    for r in rows:
        if r["system"]:
            assert device.get(r["system"]) == r["gpu"], f"{r['id']}: system {r['system']} does not hold {r['gpu']}"


def test_numbers_positive(rows):
    for r in rows:
        for key in INT_FIELDS:
            if r[key] != "":
                assert re.fullmatch(r"\d+", r[key]), f"{r['id']}: {key}={r[key]!r} is not an integer"
                assert int(r[key]) > 0, f"{r['id']}: {key} must be positive"
        for key in ("rate", "value"):
            if r[key] != "" or key == "value":
                assert float(r[key]) > 0, f"{r['id']}: {key} must be positive"


def test_parallel_degrees_multiply_to_gpu_count(rows):
    for r in rows:
        if "" in (r["tp"], r["pp"], r["replicas"], r["num_gpus"]):
            continue
        tp, pp, reps, n = (int(r[k]) for k in ("tp", "pp", "replicas", "num_gpus"))
        assert tp * pp * reps == n, f"{r['id']}: tp*pp*replicas = {tp * pp * reps} != num_gpus {n}"
        if r["ep"]:
            assert (n // reps) % int(r["ep"]) == 0, f"{r['id']}: ep must divide the GPUs of one replica"


def test_lengths_or_distributions(rows):
    for r in rows:
        for fixed, dist in (("input_len", "input_dist"), ("output_len", "output_dist")):
            assert not (r[fixed] and r[dist]), f"{r['id']}: give {fixed} or {dist}, not both"
            if r[dist]:
                assert PARAMETRIC_DIST.match(r[dist]) or DATASET_DIST.match(r[dist]), (
                    f"{r['id']}: {dist}={r[dist]!r} is not 'family:param=value,...' or 'dataset:name'"
                )


def test_complete_rows_have_required_fields(rows):
    for r in rows:
        if r["complete"] != "yes":
            assert r["note"].strip(), f"{r['id']}: incomplete row must say why in note"
            continue
        missing = [k for k in REQUIRED_IF_COMPLETE if r[k] in ("", "-")]
        assert not missing, f"{r['id']}: complete row missing {missing}"
        need = MODE_NEEDS[r["mode"]]
        assert r[need], f"{r['id']}: mode {r['mode']} needs {need}"
        for fixed, dist in (("input_len", "input_dist"), ("output_len", "output_dist")):
            if r["metric"].startswith("ttft") and fixed == "output_len" and r["mode"] == "batch":
                continue  # a first-token latency needs only the prompt
            assert r[fixed] or PARAMETRIC_DIST.match(r[dist]), (
                f"{r['id']}: complete row needs {fixed} or a parametric {dist} (not a dataset sample)"
            )


def test_metric_fits_mode(rows):
    for r in rows:
        if r["metric"] == "decode_tokens_per_s":
            assert r["mode"] == "batch", f"{r['id']}: per-request decode rate is a batch-mode metric"
        if r["mode"] == "rate":
            assert r["rate"], f"{r['id']}: rate mode without a rate"


def test_inferred_values_are_flagged(rows):
    """Values the source does not state are marked 'inferred: ...' in the note."""
    for r in rows:
        if "inferred" in r["note"].lower():
            assert "inferred:" in r["note"], f"{r['id']}: write inferred values as 'inferred: ...'"


def test_expected_coverage(rows):
    complete = [r for r in rows if r["complete"] == "yes"]
    assert len(complete) >= 30
    assert len({r["gpu"] for r in complete}) >= 3, "complete rows should span several GPUs"
    assert len({r["engine"] for r in complete}) >= 2, "complete rows should span several engines"
    metrics = {r["metric"] for r in complete}
    assert metrics & THROUGHPUT_METRICS and metrics & LATENCY_METRICS
    assert {r["mode"] for r in complete} >= {"offline", "rate", "batch"}
