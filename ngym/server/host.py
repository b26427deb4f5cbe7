"""One process that hosts several servers of a deployment (``colocate: true`` in the config).

Each hosted server keeps its own port, routes, middleware and session cookie, so it is reachable
over HTTP exactly as when it runs alone; calls *between* hosted servers skip the socket
(:mod:`ngym.server.local`). ``ng_run`` starts this as ``python -m ngym.server.host`` with the
deployment config in ``NGYM_CONFIG_DICT`` and the instances in ``NGYM_INSTANCES``.

What co-location trades: one interpreter (fast start, less memory, no per-hop HTTP between hosted
servers) against isolation — a hosted server that blocks the event loop (synchronous CPU-heavy
verification, say) slows every server of the process, and a crash stops them all. Keep such
servers out with ``colocate: [name, ...]``. Hosted modules run with ``__name__ == "__main__"``
and the repository root as working directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from typing import Any

import uvicorn
from omegaconf import DictConfig, OmegaConf
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ngym.config.deployment import ServerSpec, build_deployment
from ngym.errors import DeploymentError, NgymError
from ngym.server import local
from ngym.server.base import Server
from ngym.server.loader import load_app
from ngym.server.process import CONFIG_ENV, die_with_launcher, raise_open_file_limit, tune_gc, uvicorn_config

HOSTED_ENV = "NGYM_INSTANCES"


def load_server(spec: ServerSpec, cfg: DictConfig) -> Server[Any]:
    """Run ``spec``'s entrypoint as ``__main__`` (:func:`ngym.server.loader.load_app`) and build the
    server its ``run_webserver()`` names."""
    path = spec.dir / spec.entrypoint
    if not path.is_file():
        raise DeploymentError(f"{spec.name}: entrypoint {str(path)!r} does not exist.")
    loaded = load_app(path, as_main=True)
    served = [cls for cls in loaded.served if issubclass(cls, Server)]
    if not served:
        raise DeploymentError(
            f"{spec.name}: {path} did not call <YourServer>.run_webserver() under `if __name__ == \"__main__\":`, "
            f"so it cannot be hosted with other servers. Leave it out of `colocate`."
        )
    return served[0].from_global_config(cfg, spec.name)


class PortDispatcher:
    """One ASGI app in front of several: a request goes to the app of the port it came in on;
    lifespan events go to every app (startup in order, shutdown in reverse)."""

    def __init__(self, apps: dict[int, ASGIApp]) -> None:
        self.apps = apps

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        server = scope.get("server") or (None, 0)
        app = self.apps.get(int(server[1] or 0))
        if app is None:
            raise RuntimeError(f"no hosted server listens on port {server[1]}")
        await app(scope, receive, send)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        await receive()  # lifespan.startup
        running: list[tuple[asyncio.Queue[Message], asyncio.Queue[Message], asyncio.Task[None]]] = []
        for app in self.apps.values():
            inbox: asyncio.Queue[Message] = asyncio.Queue()
            outbox: asyncio.Queue[Message] = asyncio.Queue()
            task = asyncio.ensure_future(app({**scope, "state": {}}, inbox.get, outbox.put))
            running.append((inbox, outbox, task))
            await inbox.put({"type": "lifespan.startup"})
            answer = await _answer(outbox, task)
            if answer is not None and answer["type"] == "lifespan.startup.failed":
                await send(answer)
                return
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        for inbox, outbox, task in reversed(running):
            if not task.done():
                await inbox.put({"type": "lifespan.shutdown"})
                await _answer(outbox, task)
        await send({"type": "lifespan.shutdown.complete"})


async def _answer(outbox: asyncio.Queue[Message], task: asyncio.Task[None]) -> Message | None:
    """The app's next lifespan message, or None when it ended without one (no lifespan support)."""
    getter = asyncio.ensure_future(outbox.get())
    await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
    if getter.done():
        return getter.result()
    getter.cancel()
    error = task.exception()
    if error is not None:
        return {"type": "lifespan.startup.failed", "message": f"{type(error).__name__}: {error}"}
    return None


class HostedServers:
    """Servers of a deployment hosted by this process: loaded, callable without a socket, and served
    over HTTP on their own ports by one uvicorn server.

    ``run()`` serves until a signal (the host process); ``async with`` serves in the running event
    loop while the caller works in it (a one-shot ``ng_collect_rollouts`` that hosts its servers)."""

    def __init__(self, cfg: DictConfig, names: list[str]) -> None:
        specs = build_deployment(cfg.copy(), assign_ports=False).servers
        unknown = [n for n in names if n not in specs]
        if unknown:
            raise DeploymentError(f"instances {unknown} are not in the deployment config")
        self.specs = [specs[n] for n in names]
        self.apps: dict[int, ASGIApp] = {}
        self.sockets = []
        for spec in self.specs:
            app = load_server(spec, cfg).build_app()
            self.apps[spec.port] = app
            self.sockets.append(uvicorn.Config(app, host=spec.host, port=spec.port, log_level="warning").bind_socket())
        for spec in self.specs:
            local.register(spec.url, self.apps[spec.port])
        raise_open_file_limit()
        first = self.specs[0]
        self.server = _Server(uvicorn_config(PortDispatcher(self.apps), first.host, first.port))
        self._task: asyncio.Task[None] | None = None

    def run(self) -> None:
        """Serve until SIGINT/SIGTERM (uvicorn's own signal handling)."""
        tune_gc()
        self.server.own_signals = True
        self.server.run(sockets=self.sockets)

    async def __aenter__(self) -> HostedServers:
        self._task = asyncio.ensure_future(self.server.serve(sockets=self.sockets))
        while not self.server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise DeploymentError(
                    f"The servers hosted in this process ({', '.join(s.name for s in self.specs)}) did not start; "
                    f"their errors are above."
                )
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.should_exit = True
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, 10)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
        for spec in self.specs:
            local.unregister(spec.url)


class _Server(uvicorn.Server):
    """uvicorn's server; inside someone else's event loop it leaves the signal handlers alone."""

    own_signals = False

    def capture_signals(self) -> Any:
        return super().capture_signals() if self.own_signals else contextlib.nullcontext()


def main() -> None:
    die_with_launcher()
    raw, names = os.environ.get(CONFIG_ENV), os.environ.get(HOSTED_ENV, "")
    if not raw or not names:
        sys.exit(f"error: ngym.server.host is started by ng_run (it needs {CONFIG_ENV} and {HOSTED_ENV}).")
    cfg = OmegaConf.create(raw)
    assert isinstance(cfg, DictConfig)
    try:
        hosted = HostedServers(cfg, names.split(","))
    except NgymError as e:
        sys.exit(f"error: {e}")
    hosted.run()


if __name__ == "__main__":
    main()
