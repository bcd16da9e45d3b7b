"""The HTTP API of ``fathom ui``: each endpoint equals the Python API, limits and bad input get 4xx with one line,
and fuzzing the OpenAPI schema never gets a 5xx."""

from __future__ import annotations

import time
import warnings

import pytest

pytest.importorskip("fastapi", reason="the web extra (fastapi, uvicorn) is not installed")
pytest.importorskip("httpx", reason="httpx (FastAPI's TestClient) is not installed")

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette asks for httpx2 in place of httpx; both work
    from fastapi.testclient import TestClient

from hypothesis import HealthCheck, settings  # noqa: E402

from fathom.api import estimate_training_plan, search_training_plans  # noqa: E402
from fathom.web import Limits, create_app  # noqa: E402

TRAIN = {"model": "llama-3.1-8b", "gpu": "h100-sxm", "num_gpus": 8, "seq_len": 4096, "global_batch": 64, "tp": 2}
SERVE = {
    "model": "llama-3.1-8b",
    "gpu": "h100-sxm",
    "rate": 4,
    "num_requests": 100,
    "input_len": "512",
    "output_len": "64",
}
CONFIG = {
    "model_type": "llama",
    "hidden_size": 2048,
    "intermediate_size": 8192,
    "num_hidden_layers": 16,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "vocab_size": 128256,
    "max_position_embeddings": 8192,
}


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app()) as c:
        yield c


def assert_error(response, status: int, kind: str, *words: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == kind
    message = body["message"]
    assert "\n" not in message and message
    for w in words:
        assert w in message, message
    return message


def test_catalog_lists(client):
    for path, name in (("/api/models", "llama-3.1-8b"), ("/api/gpus", "h100-sxm"), ("/api/systems", "dgx-h100")):
        r = client.get(path)
        assert r.status_code == 200
        assert name in [item["name"] for item in r.json()]


def test_estimate_equals_the_python_api(client):
    r = client.post("/api/train/estimate", json=TRAIN)
    assert r.status_code == 200, r.text
    direct = estimate_training_plan(**{**TRAIN, "schedule": "1f1b"}).model_dump(mode="json")
    assert r.json() == direct


def test_estimate_from_a_pasted_config(client):
    r = client.post(
        "/api/train/estimate", json={**{k: v for k, v in TRAIN.items() if k != "model"}, "config": CONFIG, "tp": 1}
    )
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "hf-llama" and r.json()["step_time_s"] > 0


def test_search_equals_the_python_api(client):
    body = {"model": "llama-3.1-8b", "gpu": "h100-sxm", "num_gpus": 16, "seq_len": 4096, "global_batch": 64, "top": 5}
    r = client.post("/api/train/search", json=body)
    assert r.status_code == 200, r.text
    direct = search_training_plans(**{**body, "pareto": True}).model_dump(mode="json")
    got = r.json()
    assert got["space_size"] == direct["space_size"] and got["feasible"] == direct["feasible"]
    assert [p["tokens_per_s"] for p in got["plans"]] == [p["tokens_per_s"] for p in direct["plans"]]


def test_simulate_returns_the_report_and_chart_data(client):
    r = client.post("/api/serve/simulate", json=SERVE)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["report"]["completed"] == 100
    for key in ("ttft_s", "tpot_s", "e2e_s"):
        x, y = body["cdf"][key]["x"], body["cdf"][key]["y"]
        assert len(x) == len(y) > 0 and y[-1] == pytest.approx(1.0) and x == sorted(x)
    assert set(body["timeline"]["pools"]["all replicas"]) == {"running", "waiting", "kv_percent"}
    again = client.post("/api/serve/simulate", json=SERVE).json()
    assert again["report"] == body["report"]  # seeded: the same answer twice


def test_serving_search_finds_a_deployment(client):
    body = {
        "model": "llama-3.1-8b",
        "gpus": ["h100-sxm", "l40s"],
        "slo_ttft_s": 1,
        "slo_tpot_s": 0.05,
        "rate": 4,
        "input_len": "512",
        "output_len": "128",
        "max_simulations": 8,
    }
    r = client.post("/api/serve/search", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["feasible"] and r.json()["deployments"]
    over = client.post("/api/serve/search", json={**body, "max_simulations": 1000})
    assert_error(over, 413, "over_limit", "max_simulations")


def test_sweep_job_reports_progress_and_result(client):
    r = client.post("/api/jobs", json={"kind": "serve_sweep", "request": {"scenario": SERVE, "rates": [1, 8]}})
    assert r.status_code == 202, r.text
    url = r.json()["status_url"]
    seen = []
    for _ in range(300):
        job = client.get(url).json()
        seen.append(job["progress"])
        if job["state"] in ("done", "failed"):
            break
        time.sleep(0.05)
    assert job["state"] == "done", job
    assert job["progress"] == 1.0 and job["total_units"] == 2 and seen == sorted(seen)
    assert [p["rate"] for p in job["result"]["points"]] == [1, 8]


def test_search_job_and_unknown_job(client):
    request = {"model": "llama-3.1-8b", "gpu": "h100-sxm", "num_gpus": 8, "seq_len": 2048, "global_batch": 32}
    url = client.post("/api/jobs", json={"kind": "train_search", "request": request}).json()["status_url"]
    for _ in range(300):
        job = client.get(url).json()
        if job["state"] in ("done", "failed"):
            break
        time.sleep(0.05)
    assert job["state"] == "done" and job["result"]["feasible"] > 0
    assert_error(client.get("/api/jobs/nope"), 404, "not_found", "nope")
    bad = client.post("/api/jobs", json={"kind": "train_search", "request": {"model": "x"}})
    assert_error(bad, 422, "invalid_input")


@pytest.mark.parametrize(
    ("path", "body", "words"),
    [
        ("/api/train/estimate", {**TRAIN, "model": "llama-3.1-8bb"}, ("model", "did you mean", "llama-3.1-8b")),
        ("/api/train/estimate", {**TRAIN, "gpu": "h1000"}, ("gpu", "unknown name")),
        ("/api/train/estimate", {**TRAIN, "tp": 3}, ("tp=3",)),
        ("/api/train/estimate", {**TRAIN, "num_gpus": "eight"}, ("num_gpus",)),
        ("/api/train/estimate", {**TRAIN, "model": "/etc/passwd.json"}, ("model", "unknown name")),
        ("/api/train/estimate", {**TRAIN, "config": {"model_type": "llama"}}, ("exactly one",)),
        (
            "/api/train/estimate",
            {k: v for k, v in TRAIN.items() if k != "model"} | {"config": {"model_type": "x"}},
            ("model_type",),
        ),
        ("/api/train/estimate", {**TRAIN, "schedule": "interleaved"}, ("vpp",)),
        ("/api/train/estimate", {**TRAIN, "surprise": 1}, ("surprise",)),
        ("/api/serve/simulate", {**SERVE, "input_len": "empirical:/etc/hosts"}, ("input",)),
        ("/api/serve/simulate", {**SERVE, "rate": None}, ("rate",)),
        ("/api/serve/simulate", {**SERVE, "input_len": "gaussian:1"}, ("input_len",)),
        ("/api/serve/simulate", {**SERVE, "model": "llama-3.1-405b"}, ("does not fit",)),
    ],
)
def test_bad_input_is_422_with_one_line(client, path, body, words):
    assert_error(client.post(path, json=body), 422, "invalid_input", *words)


def test_malformed_json_is_422(client):
    r = client.post("/api/train/estimate", content=b"{not json", headers={"Content-Type": "application/json"})
    assert_error(r, 422, "invalid_input")


@pytest.mark.parametrize(
    ("path", "body", "words"),
    [
        ("/api/train/estimate", {**TRAIN, "num_gpus": 2_000_000, "tp": 1}, ("num_gpus", "limit of 1,048,576")),
        ("/api/train/search", {**TRAIN, "tp": None, "num_gpus": 100_000}, ("num_gpus", "16,384")),
        ("/api/serve/simulate", {**SERVE, "num_requests": 10**6}, ("simulated requests", "20,000")),
        ("/api/serve/simulate", {**SERVE, "num_requests": None, "duration_s": 1e6}, ("simulated requests",)),
        ("/api/serve/simulate", {**SERVE, "output_len": "100000", "num_requests": 1000}, ("output tokens",)),
        ("/api/serve/simulate", {**SERVE, "replicas": 2**20, "tp": 8}, ("GPUs",)),
        ("/api/serve/sweep", {"scenario": SERVE, "rates": list(range(1, 30))}, ("rates", "12")),
    ],
)
def test_over_the_limits_is_413_with_a_message(client, path, body, words):
    assert_error(client.post(path, json=body), 413, "over_limit", *words, "limit")


def test_search_space_limit():
    with TestClient(create_app(Limits(max_search_plans=1000))) as c:
        body = {"model": "llama-3.1-70b", "gpu": "h100-sxm", "max_gpus": 256, "seq_len": 4096, "global_batch": 256}
        assert_error(c.post("/api/train/search", json=body), 413, "over_limit", "search space", "narrow")


def test_deadline_is_408_and_busy_is_429():
    with TestClient(create_app(Limits(timeout_s=0.01, workers=1))) as c:
        slow = {**SERVE, "num_requests": 3000}
        assert_error(c.post("/api/serve/simulate", json=slow), 408, "timeout", "0.01 s")
        answers = [c.post("/api/serve/simulate", json=slow).status_code for _ in range(8)]
        assert set(answers) <= {408, 429} and 429 in answers


def test_page_and_assets_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "fathom" in page.text
    for asset in ("main.js", "charts.js", "style.css"):
        r = client.get(f"/static/{asset}")
        assert r.status_code == 200 and len(r.content) > 100
    assert "http://" not in client.get("/static/main.js").text  # nothing fetched from elsewhere


# Property-based fuzzing of the whole API from its OpenAPI schema: whatever fits the schema (and what does not, in
# schemathesis's negative mode), the answer is never a 5xx. Bounded so it runs in well under a minute.
schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed")
FUZZ_LIMITS = Limits(
    max_requests=300,
    max_output_tokens=2e5,
    max_input_tokens=2e6,
    max_search_gpus=64,
    max_search_plans=20_000,
    max_sweep_rates=3,
    max_search_simulations=3,
    timeout_s=5.0,
)
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(FUZZ_LIMITS))


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_fuzzed_requests_never_get_a_5xx(case):
    response = case.call()
    assert response.status_code < 500, f"{case.method} {case.path}: {response.status_code} {response.text[:300]}"
