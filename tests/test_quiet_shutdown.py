"""Stopping a server with requests still in flight (Ctrl-C of a collection against a slow model)
prints uvicorn's one summary line, not a traceback per cancelled request."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import httpx

SERVER = textwrap.dedent(
    """
    import asyncio, sys
    import uvicorn
    from fastapi import FastAPI
    from ngym.server.process import uvicorn_config

    app = FastAPI()

    @app.get("/slow")
    async def slow() -> dict[str, str]:
        await asyncio.sleep(60)
        return {"done": "yes"}

    config = uvicorn_config(app, "127.0.0.1", int(sys.argv[1]))
    config.log_level = "warning"
    uvicorn.Server(config).run()
    """
)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_interrupt_with_requests_in_flight_prints_no_tracebacks() -> None:
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port)], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/docs", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline and server.poll() is None, "the server did not start"
                time.sleep(0.1)
        clients = [
            subprocess.Popen([sys.executable, "-c", f"import httpx; httpx.get('http://127.0.0.1:{port}/slow', timeout=60)"],
                             stderr=subprocess.DEVNULL)
            for _ in range(3)
        ]
        time.sleep(1.5)  # the three requests are in the handler
        server.send_signal(signal.SIGTERM)  # what the launcher sends its servers on Ctrl-C
        _, stderr = server.communicate(timeout=30)
        for c in clients:
            c.kill()
    finally:
        server.kill()
    assert "Cancel 3 running task(s)" in stderr  # the summary stays: the requests were really cut
    assert "Traceback" not in stderr and "CancelledError" not in stderr, stderr
