"""The engine lives and dies with the model server: started before the server answers, stopped at
shutdown, and killed with it even by ``kill -9`` (no real model: a stand-in llama-server binary)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]

FAKE_SERVER = textwrap.dedent(
    """\
    import http.server, json, os, sys
    args = sys.argv[1:]
    port = int(args[args.index("--port") + 1])
    with open(os.environ["FAKE_LLAMA_PIDFILE"], "w") as f:
        f.write(str(os.getpid()))

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"status": "ok", "eos_token": "<|im_end|>"}).encode()
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _start(tmp_path: Path) -> tuple[subprocess.Popen[bytes], int, str]:
    binary = tmp_path / "llama-server"
    binary.write_text(f"#!{sys.executable}\n{FAKE_SERVER}")
    binary.chmod(0o755)
    gguf = tmp_path / "tiny.gguf"
    gguf.write_bytes(b"GGUF" + bytes(64))
    port = _free_port()
    config = {"policy_model": {"responses_api_models": {"local_model": {
        "entrypoint": "app.py", "model_path": str(gguf), "host": "127.0.0.1", "port": port, "startup_timeout_s": 30}}}}
    env = {
        **os.environ,
        "NGYM_CONFIG_DICT": yaml.safe_dump(config),
        "NGYM_INSTANCE": "policy_model",
        "NGYM_LLAMA_SERVER": str(binary),
        "FAKE_LLAMA_PIDFILE": str(tmp_path / "llama.pid"),
        "PYTHONPATH": str(REPO),
    }
    proc = subprocess.Popen(
        [sys.executable, "app.py"], cwd=REPO / "responses_api_models/local_model", env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        try:
            if httpx.get(url + "/", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "local_model did not come up"
        time.sleep(0.1)
    return proc, int((tmp_path / "llama.pid").read_text()), url


def _gone(pid: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
def test_engine_is_started_first_and_never_outlives_the_model_server(tmp_path: Path, sig: signal.Signals) -> None:
    proc, engine_pid, url = _start(tmp_path)
    try:
        assert _alive(engine_pid)
        assert httpx.get(url + "/v1/models").json()["data"][0]["id"] == "tiny"
        proc.send_signal(sig)
        proc.wait(15)
        assert _gone(engine_pid), f"llama-server {engine_pid} outlived the model server ({sig.name})"
    finally:
        if proc.poll() is None:
            proc.kill()
        if _alive(engine_pid):
            os.kill(engine_pid, signal.SIGKILL)


def test_a_missing_weight_file_is_a_clear_startup_error(tmp_path: Path) -> None:
    config = {"policy_model": {"responses_api_models": {"local_model": {
        "entrypoint": "app.py", "model_path": str(tmp_path / "nope.gguf"), "host": "127.0.0.1", "port": _free_port()}}}}
    env = {**os.environ, "NGYM_CONFIG_DICT": yaml.safe_dump(config), "NGYM_INSTANCE": "policy_model", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "app.py"], cwd=REPO / "responses_api_models/local_model", env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "policy_model: cannot start the local model" in done.stderr and "nope.gguf" in done.stderr


def test_a_dead_engine_ends_the_model_server_with_its_log(tmp_path: Path) -> None:
    proc, engine_pid, _ = _start(tmp_path)
    try:
        os.kill(engine_pid, signal.SIGKILL)
        code = proc.wait(15)
        output = proc.stdout.read().decode() if proc.stdout else ""
        assert code != 0
        assert f"llama-server (pid {engine_pid}) exited with code -9" in output and "its log" in output
    finally:
        if proc.poll() is None:
            proc.kill()
