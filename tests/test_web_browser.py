"""The page of ``fathom ui`` in a real browser: headless Chromium (Debian's, driven by Playwright) loads the page
served by uvicorn, fills the forms, runs an estimate, a plan search, a serving simulation and a load sweep, checks
the numbers shown equal the API's JSON, follows a shared link, compares two plans, and saves screenshots to
``build/screenshots/``. ``make install`` installs Chromium (scripts/install_browser.sh)."""

from __future__ import annotations

import re
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
if CHROMIUM is None:
    pytest.skip(
        "Chromium is not installed (scripts/install_browser.sh installs Debian's chromium)", allow_module_level=True
    )
pytest.importorskip("fastapi", reason="the web extra (fastapi, uvicorn) is not installed")
uvicorn = pytest.importorskip("uvicorn", reason="the web extra (fastapi, uvicorn) is not installed")
httpx = pytest.importorskip("httpx", reason="httpx is not installed")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (the Python package) is not installed")

from fathom.web import create_app  # noqa: E402

SCREENSHOTS = Path(__file__).resolve().parent.parent / "build" / "screenshots"
# Debian's Chromium as root in a container, with nothing that reaches out to the internet.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    pg = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(server + "/")
    pg.wait_for_selector("body[data-ready='1']", timeout=20_000)
    yield pg
    pg.close()
    assert not errors, errors


def lookup(data: dict, dotted: str):
    for part in dotted.split("."):
        data = data[part]
    return data


def shown(pg, container: str, key: str) -> tuple[float, str]:
    """The exact value (data-value) and the text of the number shown for ``key`` inside ``container``."""
    el = pg.locator(f"{container} [data-key='{key}']").first
    return float(el.get_attribute("data-value")), el.inner_text()


def assert_shown_equals(pg, container: str, api: dict, keys: list[str]) -> None:
    for key in keys:
        value, text = shown(pg, container, key)
        expected = lookup(api, key)
        assert value == pytest.approx(expected, rel=1e-12), key
        number = float(re.sub(r"[^0-9.eE+-]", "", text.replace(",", "")))
        scale = 100.0 if text.endswith("%") else 1.0
        assert number == pytest.approx(expected * scale, rel=5e-3, abs=1e-9), f"{key}: shows {text!r} for {expected}"


TRAIN_KEYS = [
    "step_time_s",
    "tokens_per_s",
    "tokens_per_s_per_gpu",
    "tflops_per_gpu",
    "mfu",
    "memory.peak_gib",
    "memory.headroom_gib",
]
SERVE_KEYS = ["ttft_s.p50", "ttft_s.p99", "tpot_s.p50", "e2e_s.p50", "e2e_s.p99", "itl_s.mean"]


def test_training_view(page, server):
    page.select_option("#t-model", "llama-3.1-70b")
    page.fill("#t-num-gpus", "64")
    page.fill("#t-tp", "8")
    page.fill("#t-global-batch", "256")
    page.click("#t-estimate")
    page.wait_for_selector("#t-metrics [data-key='step_time_s']")
    request = {
        "model": "llama-3.1-70b",
        "gpu": "h100-sxm",
        "num_gpus": 64,
        "seq_len": 4096,
        "global_batch": 256,
        "micro_batch": 1,
        "tp": 8,
        "pp": 1,
        "cp": 1,
        "ep": 1,
        "vpp": 1,
        "zero": 1,
        "recompute": "selective",
        "precision": "bf16",
        "optimizer": "adamw",
    }
    assert page.evaluate("window.fathomState.last.train.request") == request
    api = httpx.post(server + "/api/train/estimate", json=request, timeout=60).json()
    assert_shown_equals(page, "#t-metrics", api, TRAIN_KEYS)
    parts = [v for v in api["memory"]["breakdown"].values() if v > 0]
    assert page.locator("#t-memory-chart svg rect").count() == 2 * len(parts)  # a bar and a legend swatch each
    steps = [v for v in api["time_breakdown"].values() if v > 0]
    assert page.locator("#t-time-chart svg rect").count() == len(steps) + 1  # and the total
    page.click("#t-search")
    page.wait_for_selector("#search-results tbody tr", timeout=60_000)
    search = page.evaluate("""async () => (await (await fetch('/api/train/search', {method: 'POST',
        headers: {'Content-Type': 'application/json'}, body: JSON.stringify({model: 'llama-3.1-70b', gpu: 'h100-sxm',
        num_gpus: 64, seq_len: 4096, global_batch: 256, precision: 'bf16', optimizer: 'adamw', objective: 'throughput',
        pareto: true, top: 20})})).json())""")
    assert page.locator("#search-results tbody tr").count() == len(search["plans"])
    assert_shown_equals(page, "#search-results tbody tr:first-child", search["plans"][0], ["tokens_per_s", "mfu"])
    assert page.locator("#t-pareto-chart circle.front").count() >= 1
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "training.png"), full_page=True)


def test_serving_view(page, server):
    page.click("#tab-serve")
    page.fill("#s-rate", "6")
    page.fill("#s-num-requests", "150")
    page.fill("#s-output-len", "128")
    page.fill("#s-slo-ttft-s", "0.2")
    page.click("#s-simulate")
    page.wait_for_selector("#s-percentile-table")
    request = page.evaluate("window.fathomState.last.serve.request")
    assert request["rate"] == 6 and request["num_requests"] == 150 and request["output_len"] == "128"
    api = httpx.post(server + "/api/serve/simulate", json=request, timeout=60).json()
    assert_shown_equals(page, "#s-percentile-table", api["report"], SERVE_KEYS)
    keys = ["throughput.requests_per_s", "throughput.output_tokens_per_s", "goodput_requests_per_s"]
    assert_shown_equals(page, "#s-metrics", api["report"], keys)
    for chart in ("#s-cdf-ttft", "#s-cdf-tpot", "#s-cdf-e2e", "#s-timeline-kv-percent", "#s-timeline-running"):
        assert page.locator(f"{chart} svg path.series").count() >= 1, chart
    page.fill("#s-rates", "2,8,32")
    page.click("#s-sweep")
    page.wait_for_selector("#s-sweep-throughput svg path.series", timeout=60_000)
    assert "sweep done: 3 rates" in page.inner_text("#s-status")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "serving.png"), full_page=True)


def test_shared_link_and_compare(page, server, browser):
    page.fill("#t-tp", "2")
    page.click("#t-estimate")
    page.wait_for_selector("#t-metrics [data-key='step_time_s']")
    first = shown(page, "#t-metrics", "step_time_s")[0]
    page.click("#t-pin-a")
    page.click("#t-share")
    url = page.input_value("#share-url")
    assert "tp=2" in url and "run=estimate" in url
    other = browser.new_page()
    other.goto(url)
    other.wait_for_selector("#t-metrics [data-key='step_time_s']", timeout=20_000)
    assert shown(other, "#t-metrics", "step_time_s")[0] == first  # the link reproduces the scenario
    other.close()
    page.fill("#t-tp", "4")
    page.click("#t-estimate")
    page.wait_for_function(
        "first => parseFloat(document.querySelector(\"#t-metrics [data-key='step_time_s']\").dataset.value) !== first",
        arg=first,
    )
    page.click("#t-pin-b")
    page.click("#tab-compare")
    rows = page.locator("#compare-table tbody tr")
    assert rows.count() >= 8
    a_b = page.locator("#compare-table tbody tr:first-child [data-key='step_time_s']")
    assert float(a_b.nth(0).get_attribute("data-value")) == first
    assert page.locator("#c-b-chart1 svg").count() == 1
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "compare.png"), full_page=True)
