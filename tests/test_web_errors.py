"""Every error of the HTTP API is ``{"error", "message"}`` with one line: values the model code cannot compute with
(422, traceback logged), faults of the server (500), jobs' inner requests, Starlette's own errors, lengths as
numbers."""

from __future__ import annotations

import logging
import time
import warnings

import pytest

pytest.importorskip("fastapi", reason="the web extra (fastapi, uvicorn) is not installed")
pytest.importorskip("httpx", reason="httpx (FastAPI's TestClient) is not installed")

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette asks for httpx2 in place of httpx; both work
    from fastapi.testclient import TestClient

from fathom.web import app as web_app  # noqa: E402
from fathom.web import create_app, services  # noqa: E402
from fathom.web.errors import validation_message  # noqa: E402
from fathom.web.schemas import ServeSearchRequest, ServeSimulateRequest  # noqa: E402

TRAIN = {"model": "llama-3.1-8b", "gpu": "h100-sxm", "num_gpus": 8, "seq_len": 4096, "global_batch": 64, "tp": 2}
SERVE = {
    "model": "llama-3.1-8b",
    "gpu": "h100-sxm",
    "rate": 4,
    "num_requests": 40,
    "input_len": "512",
    "output_len": "64",
}
HUGE_CONFIG = {
    "model_type": "llama",
    "hidden_size": 10**400,
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


@pytest.fixture(scope="module")
def faulty_client():
    """A client that answers a server fault as the server would (500) instead of raising it in the test."""
    with TestClient(create_app(), raise_server_exceptions=False) as c:
        yield c


def assert_error(response, status: int, kind: str, *words: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "message"}, body
    assert body["error"] == kind, body
    message = body["message"]
    assert message and "\n" not in message
    for w in words:
        assert w in message, message
    return message


def wait_for(client, url: str) -> dict:
    for _ in range(300):
        job = client.get(url).json()
        if job["state"] in ("done", "failed"):
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {url} did not finish: {job}")


# 1. A last-resort handler: what the model code cannot compute with is bad input (422); anything else is a 500,
# both in the same body.


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/train/estimate", {k: v for k, v in TRAIN.items() if k not in ("model", "tp")} | {"config": HUGE_CONFIG}),
        ("/api/serve/simulate", {k: v for k, v in SERVE.items() if k != "model"} | {"config": HUGE_CONFIG}),
    ],
)
def test_a_config_number_too_large_for_a_float_is_422(client, path, body):
    assert_error(client.post(path, json=body), 422, "invalid_input", "config")


@pytest.mark.parametrize(
    "exc",
    [
        OverflowError("int too large to convert to float"),
        ZeroDivisionError("float division by zero"),
        TypeError("unsupported operand type(s)"),
        ValueError("math domain error"),
    ],
)
def test_errors_escaping_the_model_code_are_422_and_logged(client, monkeypatch, caplog, exc):
    def boom(*args, **kwargs):
        raise exc

    monkeypatch.setattr(services, "estimate", boom)
    with caplog.at_level(logging.WARNING, logger="fathom.web"):
        r = client.post("/api/train/estimate", json=TRAIN)
    assert_error(r, 422, "invalid_input", type(exc).__name__, str(exc))
    logged = [rec for rec in caplog.records if rec.name == "fathom.web" and rec.exc_info]
    assert logged and logged[0].exc_info[1] is exc  # the traceback stays on the server


def test_a_fault_of_the_server_is_500_in_the_same_body(faulty_client, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("secret internal state")

    monkeypatch.setattr(services, "simulate", boom)
    message = assert_error(faulty_client.post("/api/serve/simulate", json=SERVE), 500, "internal", "RuntimeError")
    assert "secret" not in message  # internals stay in the server's log


@pytest.mark.parametrize(
    ("exc", "status", "kind"),
    [(ZeroDivisionError("division by zero"), "422", "invalid_input"), (RuntimeError("bug"), "500", "internal")],
)
def test_a_failed_job_is_described_the_same_way(client, monkeypatch, caplog, exc, status, kind):
    def work(request, limits, progress):
        raise exc

    monkeypatch.setitem(web_app._JOB_WORK, "train_search", (web_app.TrainSearchRequest, work))
    request = {"model": "llama-3.1-8b", "gpu": "h100-sxm", "num_gpus": 8, "seq_len": 2048, "global_batch": 32}
    with caplog.at_level(logging.WARNING, logger="fathom.web"):
        r = client.post("/api/jobs", json={"kind": "train_search", "request": request})
        assert r.status_code == 202, r.text
        job = wait_for(client, r.json()["status_url"])
    assert job["state"] == "failed"
    assert job["error"]["status"] == status and job["error"]["error"] == kind
    assert "\n" not in job["error"]["message"] and type(exc).__name__ in job["error"]["message"]
    assert any(rec.exc_info and rec.exc_info[1] is exc for rec in caplog.records)


def test_input_errors_are_not_logged_as_unexpected(client, caplog):
    with caplog.at_level(logging.WARNING, logger="fathom.web"):
        assert_error(client.post("/api/train/estimate", json={**TRAIN, "tp": 3}), 422, "invalid_input")
    assert not [rec for rec in caplog.records if rec.name == "fathom.web"]


# 2. A job's inner request is checked as the endpoint it stands for checks its body.


def test_a_job_names_its_request_fields_as_the_endpoint_does(client):
    direct = client.post("/api/train/search", json={"gpu": "h100-sxm"})
    assert_error(direct, 422, "invalid_input")
    assert direct.json()["message"] == "body.seq_len: Field required; body.global_batch: Field required"
    job = client.post("/api/jobs", json={"kind": "train_search", "request": {"gpu": "h100-sxm"}})
    message = assert_error(job, 422, "invalid_input")
    assert message == "body.request.seq_len: Field required; body.request.global_batch: Field required"
    assert "pydantic" not in message and "validation error" not in message


def test_a_job_with_a_bad_inner_field_names_it(client):
    sweep = {"kind": "serve_sweep", "request": {"scenario": {**SERVE, "tp": 0}, "rates": [1]}}
    assert_error(client.post("/api/jobs", json=sweep), 422, "invalid_input", "body.request.scenario.tp")


def test_many_violations_list_three_then_count():
    errors = [{"loc": ("body", f"f{i}"), "msg": "Field required"} for i in range(5)]
    assert validation_message(errors) == (
        "body.f0: Field required; body.f1: Field required; body.f2: Field required (and 2 more)"
    )
    assert validation_message(errors[:3]).count("Field required") == 3 and "more" not in validation_message(errors[:3])


# 3. Starlette's own errors (wrong method, unknown path, a body that cannot be parsed) in the same body.


def test_wrong_method_is_405_in_the_error_body(client):
    r = client.get("/api/train/estimate")
    assert_error(r, 405, "method_not_allowed", "GET", "/api/train/estimate", "POST")
    assert r.headers.get("allow") == "POST"


@pytest.mark.parametrize("path", ["/api/nope", "/static/nope.js"])
def test_unknown_path_is_404_in_the_error_body(client, path):
    assert_error(client.get(path), 404, "not_found", path)


def test_a_body_nested_too_deeply_is_422(client):
    deep = "[" * 100_000 + "]" * 100_000
    r = client.post("/api/train/estimate", content=deep, headers={"Content-Type": "application/json"})
    assert_error(r, 422, "invalid_input", "body", "nested too deeply")


def test_a_body_not_utf8_is_422(client):
    r = client.post("/api/train/estimate", content=b"\xff\xfe\xfa", headers={"Content-Type": "application/json"})
    assert_error(r, 422, "invalid_input", "body")


def test_malformed_json_names_where(client):
    r = client.post("/api/train/estimate", content=b"{not json", headers={"Content-Type": "application/json"})
    assert_error(r, 422, "invalid_input", "body: not valid JSON at character 1")


# 4. Lengths as JSON numbers, as the CLI's --input-len N.


def test_lengths_as_numbers_equal_lengths_as_strings(client):
    as_text = client.post("/api/serve/simulate", json=SERVE)
    as_numbers = client.post("/api/serve/simulate", json={**SERVE, "input_len": 512, "output_len": 64})
    assert as_text.status_code == as_numbers.status_code == 200, as_numbers.text
    assert as_numbers.json()["report"] == as_text.json()["report"]


def test_lengths_as_numbers_in_every_request_that_takes_them():
    assert ServeSimulateRequest.model_validate({**SERVE, "input_len": 512, "output_len": 64.0}).input_len == "512"
    search = {"gpus": ["h100-sxm"], "slo_ttft_s": 1, "slo_tpot_s": 0.05, "rate": 1, "input_len": 300}
    assert ServeSearchRequest.model_validate(search).input_len == "300"


@pytest.mark.parametrize(
    ("value", "words"), [(0, ("input_len", "0")), (True, ("input_len",)), (-5, ("input_len", "-5"))]
)
def test_bad_numeric_lengths_name_the_field(client, value, words):
    assert_error(client.post("/api/serve/simulate", json={**SERVE, "input_len": value}), 422, "invalid_input", *words)


def test_the_schema_offers_lengths_as_numbers_or_strings(client):
    props = client.get("/openapi.json").json()["components"]["schemas"]["ServeSimulateRequest"]["properties"]
    assert {"integer", "string"} <= {alt["type"] for alt in props["input_len"]["anyOf"]}
