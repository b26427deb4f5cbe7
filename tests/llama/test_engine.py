"""LlamaServer lifecycle tests against a fake ``llama-server`` (a small Python script)."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ngym.models.llama.engine import LlamaServer, LlamaServerError, _die_with_parent

FAKE_SERVER = textwrap.dedent(
    """
    import http.server, json, os, signal, sys, time
    args = sys.argv[1:]
    port = int(args[args.index("--port") + 1])
    mode = os.environ.get("FAKE_MODE", "ok")
    print("fake llama-server args:", " ".join(args), flush=True)
    if mode == "crash":
        print("error: failed to load model 'broken.gguf'", flush=True)
        sys.exit(3)
    if mode == "ignore_term":
        signal.signal(signal.SIGTERM, lambda *a: print("ignoring SIGTERM", flush=True))
    started = time.monotonic()

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            loading = time.monotonic() - started < 0.3 or mode == "never_ready"
            body = {"error": {"code": 503, "message": "Loading model"}} if loading else {"status": "ok"}
            data = json.dumps(body).encode()
            self.send_response(503 if loading else 200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *a):
            pass

    http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
    """
)


@pytest.fixture()
def fake_binary(tmp_path: Path) -> Path:
    path = tmp_path / "llama-server"
    path.write_text(f"#!{sys.executable}\n" + FAKE_SERVER)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture()
def fake_model(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.gguf"
    path.write_bytes(b"GGUF" + b"\x00" * 60)
    return path


def test_command_line(fake_binary: Path, fake_model: Path) -> None:
    srv = LlamaServer(fake_model, binary=fake_binary, threads=1, parallel=4, ctx_size=8192, extra_args=["--seed", "1"])
    cmd = srv.command(port=1234)
    assert cmd[0] == str(fake_binary)
    joined = " ".join(cmd)
    for piece in [
        f"--model {fake_model}",
        "--port 1234",
        "--threads 1",
        "--parallel 4",
        "--ctx-size 8192",
        "--kv-unified",
        "--cache-reuse 256",
        "--jinja",
        "--no-webui",
        "--seed 1",
        "--alias tiny",
    ]:
        assert piece in joined
    assert LlamaServer(fake_model, binary=fake_binary, alias="m").command(port=1)[-2:] == ["--alias", "m"]


def test_start_health_and_stop(fake_binary: Path, fake_model: Path, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    with LlamaServer(fake_model, binary=fake_binary, log_path=log, startup_timeout=20) as srv:
        assert srv.is_running()
        assert srv.base_url.startswith("http://127.0.0.1:")
        assert srv.openai_base_url.endswith("/v1")
        assert srv.get_json("/health") == {"status": "ok"}
        assert srv.load_seconds is not None and srv.load_seconds >= 0.3
        pid = srv.pid
    assert not srv.is_running()
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert "fake llama-server args" in log.read_text()


def test_death_during_start_reports_log_tail(
    fake_binary: Path, fake_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    srv = LlamaServer(fake_model, binary=fake_binary, env={"FAKE_MODE": "crash"}, startup_timeout=20)
    with pytest.raises(LlamaServerError) as info:
        srv.start()
    msg = str(info.value)
    assert "exited with code 3" in msg
    assert "failed to load model 'broken.gguf'" in msg
    assert not srv.is_running()


def test_startup_deadline(fake_binary: Path, fake_model: Path) -> None:
    srv = LlamaServer(fake_model, binary=fake_binary, env={"FAKE_MODE": "never_ready"}, startup_timeout=1.0)
    t0 = time.monotonic()
    with pytest.raises(LlamaServerError, match="not ready after"):
        srv.start()
    assert time.monotonic() - t0 < 15
    assert not srv.is_running()


def test_stop_kills_after_timeout(fake_binary: Path, fake_model: Path) -> None:
    srv = LlamaServer(fake_model, binary=fake_binary, env={"FAKE_MODE": "ignore_term"}, startup_timeout=20)
    srv.start()
    t0 = time.monotonic()
    code = srv.stop(timeout=0.5)
    assert code == -9
    assert time.monotonic() - t0 < 5


def test_missing_model_file(fake_binary: Path, tmp_path: Path) -> None:
    from ngym.models.llama.weights import WeightsError

    with pytest.raises(WeightsError):
        LlamaServer(tmp_path / "nope.gguf", binary=fake_binary).start()


def test_base_url_before_start(fake_model: Path, fake_binary: Path) -> None:
    with pytest.raises(LlamaServerError, match="not started"):
        _ = LlamaServer(fake_model, binary=fake_binary).base_url


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc").is_dir() or shutil.which("setpriv") is None, reason="needs Linux and setpriv")
def test_die_with_parent_ends_the_server_when_a_threaded_parent_is_killed(
    fake_binary: Path, fake_model: Path, tmp_path: Path
) -> None:
    missing = str(tmp_path / "no-such-binary")
    assert _die_with_parent([missing, "--x"]) == [missing, "--x"]  # so Popen still reports it
    script = textwrap.dedent(
        f"""
        import threading, time
        from ngym.models.llama.engine import LlamaServer
        threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
        srv = LlamaServer({str(fake_model)!r}, binary={str(fake_binary)!r}, startup_timeout=20, die_with_parent=True)
        print(srv.start().pid, flush=True)
        time.sleep(60)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    pid = int(parent.stdout.readline())
    try:
        assert str(fake_binary) in Path(f"/proc/{pid}/cmdline").read_text()  # the server itself, not a wrapper
        parent.kill()
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(pid)
    finally:
        parent.kill()
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)
