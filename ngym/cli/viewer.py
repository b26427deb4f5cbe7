"""ng_viewer: look at a rollouts file (and compare it with another) in a local web page."""

from __future__ import annotations

import ipaddress
import socket
import sys
import time
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from ngym.cli.common import command_args, entrypoint, load
from ngym.config.paths import resolve_path
from ngym.errors import ArgumentError, PortError

if TYPE_CHECKING:
    from ngym.viewer.index import RunIndex

SUMMARY = """\
Serve a local web page over a rollouts JSONL file: the rollouts (paged, filtered by environment,
reward and status), each one as a conversation, per-environment reward histograms, pass@k and mean
reward, and a side-by-side comparison with a second run. The file is indexed once (byte offsets and
a small summary per row); rows are read from disk when shown. Failed rollouts are read from
<stem>_failures.jsonl next to the file. Binds 127.0.0.1 (this machine only) unless told otherwise.

  ng_viewer +jsonl_fpath=results/out.jsonl
  ng_viewer +jsonl_fpath=results/run_a.jsonl +compare_jsonl_fpath=results/run_b.jsonl +port=8080"""

DEFAULT_PORT = 11080


class ViewerArgs(BaseModel):
    """Arguments of ng_viewer."""

    jsonl_fpath: str = Field(description="the rollouts file to view (ng_collect_rollouts' output)")
    compare_jsonl_fpath: str | None = Field(None, description="a second rollouts file, compared with the first")
    host: str = Field("127.0.0.1", description="address to bind; anything but loopback exposes the rollouts to the network")
    port: int | None = Field(
        None, ge=0, le=65535, description=f"port to bind (default {DEFAULT_PORT}, or a free one if that is taken; 0: any free port)"
    )
    default_env: str | None = Field(
        None, description="environment name for rows without agent_ref (default: the directory of an example_rollouts.jsonl, else '?')"
    )


def _bind(host: str, port: int | None) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    candidates = [DEFAULT_PORT, 0] if port is None else [port]
    for candidate in candidates:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, candidate))
        except OSError as e:
            sock.close()
            if candidate == candidates[-1]:
                raise PortError(f"ng_viewer cannot bind {host}:{candidate}: {e.strerror or e}. Pick another with +port=... (0: any free port).") from None
            continue
        sock.listen(128)
        return sock
    raise AssertionError("unreachable")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


class LoopbackHostOnly:
    """ASGI wrapper: answer only requests whose ``Host`` names this machine's loopback. A page on
    another site cannot then read the rollouts through a DNS name rebound to 127.0.0.1."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            host = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1").lower()
            name = host.rsplit(":", 1)[0] if host.count(":") == 1 or host.startswith("[") else host
            if name not in LOOPBACK_NAMES:
                body = f"Host {host!r} is not this machine's loopback: refused (ng_viewer binds 127.0.0.1).".encode()
                await send({"type": "http.response.start", "status": 421,
                            "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def _index(path: str, default_env: str | None, what: str) -> RunIndex:
    from ngym.viewer.index import RunIndex

    resolved = resolve_path(path)
    if not resolved.is_file():
        raise ArgumentError(f"ng_viewer: {what} {path!r} does not exist (looked at {resolved}).")
    start = time.perf_counter()
    run = RunIndex(resolved, default_env=default_env)
    seconds = time.perf_counter() - start
    rollouts = sum(1 for s in run.source if s == 0)
    failed = len(run) - rollouts
    envs = ", ".join(run.envs) if len(run.envs) <= 6 else f"{len(run.envs)} environments"
    print(
        f"indexed {resolved}: {rollouts:,} rollouts"
        + (f", {failed:,} failed" if failed else "")
        + (f" ({envs})" if envs else "")
        + f" in {seconds:.2f} s",
        flush=True,
    )
    return run


@entrypoint("ng_viewer", SUMMARY, ViewerArgs)
def main(argv: list[str]) -> int:
    cfg, _ = load(argv, command="ng_viewer", model=ViewerArgs, skip_load_from_dotenv=True)
    args = command_args(cfg, ViewerArgs, "ng_viewer")
    import uvicorn

    from ngym.viewer.app import create_app

    a = _index(args.jsonl_fpath, args.default_env, "+jsonl_fpath")
    b = _index(args.compare_jsonl_fpath, args.default_env, "+compare_jsonl_fpath") if args.compare_jsonl_fpath else None
    sock = _bind(args.host, args.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    if not _is_loopback(args.host):
        print(f"warning: bound to {args.host}, not loopback: anyone who can reach this machine can read the rollouts.", file=sys.stderr)
    print(f"ng_viewer: open http://{shown}:{port}/   (Ctrl-C stops it)", flush=True)
    app: Any = create_app(a, b)
    if _is_loopback(args.host):
        app = LoopbackHostOnly(app)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0
