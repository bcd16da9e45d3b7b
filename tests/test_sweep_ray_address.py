"""``fathom sweep --ray ADDRESS`` fails in seconds with one line, exit 2, when the address is malformed, nothing
listens there, or Ray does not come up, instead of Ray retrying the connection for minutes."""

from __future__ import annotations

import socket
import sys
import time
import types

import pytest
import yaml

from fathom.cli.app import run
from fathom.errors import FathomInputError
from fathom.sweep import run as sweep_run
from fathom.sweep.run import check_ray_address
from fathom.sweep.store import checkpoint_path

SPEC = {"scenarios": [{"kind": "train", "fixed": {"model": "gpt3-1.3b", "gpu": "h100-sxm", "num_gpus": 8,
                                                  "seq_len": 2048, "global_batch": 64}}]}  # fmt: skip


@pytest.fixture
def fake_ray(monkeypatch):
    """A stand-in for Ray whose init records its calls and, by default, never returns in time."""
    calls = []

    def init(address=None, **kwargs):
        calls.append(address)
        time.sleep(30)

    fake = types.SimpleNamespace(is_initialized=lambda: False, init=init, shutdown=lambda: None, calls=calls)
    monkeypatch.setitem(sys.modules, "ray", fake)
    return fake


def _sweep(tmp_path, address: str, capsys) -> tuple[int, str, float]:
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    capsys.readouterr()
    start = time.monotonic()
    code = run(["sweep", str(spec), "--out", str(tmp_path / "r.csv"), "--ray", address, "--no-progress"])
    return code, capsys.readouterr().err.strip(), time.monotonic() - start


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("address", ["bogus", "http://head:6379", "head:", "head:99999", "ray://"])
def test_malformed_address_is_rejected_before_ray(tmp_path, capsys, fake_ray, address):
    code, err, _ = _sweep(tmp_path, address, capsys)
    assert code == 2 and err.startswith("error: --ray:") and "HOST:PORT" in err and "\n" not in err
    assert fake_ray.calls == [] and not checkpoint_path(tmp_path / "r.csv").exists()


@pytest.mark.parametrize("address", ["bogus:1234", "127.0.0.1:{port}", "ray://127.0.0.1:{port}"])
def test_nothing_listening_fails_fast(tmp_path, capsys, fake_ray, address):
    code, err, seconds = _sweep(tmp_path, address.format(port=_closed_port()), capsys)
    assert code == 2 and "cannot reach a Ray cluster" in err and "\n" not in err
    assert seconds < 10 and fake_ray.calls == []
    assert not checkpoint_path(tmp_path / "r.csv").exists()


def test_a_listener_that_is_not_ray_is_given_up_on(tmp_path, capsys, fake_ray, monkeypatch):
    monkeypatch.setattr(sweep_run, "CONNECT_S", 0.5)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        address = f"127.0.0.1:{server.getsockname()[1]}"
        code, err, seconds = _sweep(tmp_path, address, capsys)
    assert code == 2 and "no Ray cluster answered" in err and seconds < 10
    assert fake_ray.calls == [address]


def test_ray_errors_become_one_line(tmp_path, capsys, fake_ray, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)

    def init(address=None, **kwargs):
        raise ConnectionError("Could not find any running Ray instance. Please specify the one to connect to.")

    fake_ray.init = init
    code, err, _ = _sweep(tmp_path, "auto", capsys)
    assert (
        code == 2 and err == "error: --ray: cannot connect to Ray at 'auto' (Could not find any running Ray instance)"
    )


def test_valid_forms():
    assert check_ray_address("local") is None and check_ray_address("auto") is None
    assert check_ray_address("10.0.0.1:6379") == ("10.0.0.1", 6379)
    assert check_ray_address("ray://head-node.example:10001") == ("head-node.example", 10001)
    assert check_ray_address("[::1]:6379") == ("::1", 6379)
    with pytest.raises(FathomInputError):
        check_ray_address("10.0.0.1")
