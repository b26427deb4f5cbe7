"""How a server process runs: dies with its launcher, serves with uvicorn, tunes GC and file limits.

Used by single servers (:meth:`ngym.server.base.Server.run_webserver`), by the host of co-located
servers (:mod:`ngym.server.host`) and by the collector (many sockets, many objects in flight).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import resource
import sys
from typing import Any

from starlette.types import ASGIApp

#: the deployment's resolved config (JSON), given to every server process by ``ng_run``
CONFIG_ENV = "NGYM_CONFIG_DICT"
#: the instance a server process serves
INSTANCE_ENV = "NGYM_INSTANCE"
#: the pid of the ``ng_run`` that started the process
PARENT_ENV = "NGYM_LAUNCHER_PID"
#: the port a replica listens on (replicas after the first differ from the instance's ``port``)
PORT_ENV = "NGYM_PORT"
#: the address a server binds to when it is not the config's ``host`` (Ray placement: the node's)
HOST_ENV = "NGYM_HOST"


def die_with_launcher() -> None:
    """End this server when the launcher that started it dies, even by ``kill -9`` (Linux
    ``PR_SET_PDEATHSIG``; set here, in the child, because ``preexec_fn`` is unsafe in a threaded
    launcher)."""
    launcher = os.environ.get(PARENT_ENV)
    if not launcher:
        return
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != int(launcher):  # the launcher died before the line above
        sys.exit("error: the ng_run that started this server is gone")


def uvicorn_config(app: ASGIApp, host: str | None, port: int | None) -> Any:
    """How every ngym server is served (one place, so hosted and single servers behave the same)."""
    import uvicorn

    config = uvicorn.Config(
        app,
        host=host or "127.0.0.1",
        port=int(port or 0),
        log_level=os.environ.get("NGYM_LOG_LEVEL", "warning"),
        access_log=False,
        timeout_graceful_shutdown=1,
        timeout_keep_alive=75,  # longer than clients keep idle connections (30 s): no reuse races
        backlog=8192,  # bursts of thousands of new connections (large collections) are not refused
        loop=os.environ.get("NGYM_UVICORN_LOOP", "auto"),
        http="auto",
    )
    quiet_shutdown()  # after uvicorn.Config, which (re)configures its loggers
    return config


class _DropShutdownCancellations(logging.Filter):
    """A request still running when the server stops (Ctrl-C of a collection with a slow model) is
    cancelled by uvicorn after its graceful-shutdown timeout; uvicorn then logs one traceback per
    request ("Exception in ASGI application" ... ``CancelledError``): hundreds of screens of noise
    that hide the one line that matters. Its own summary line ("Cancel N running task(s) ...") stays."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, asyncio.CancelledError)


def quiet_shutdown() -> None:
    """Install :class:`_DropShutdownCancellations` on uvicorn's error logger (once)."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _DropShutdownCancellations) for f in logger.filters):
        logger.addFilter(_DropShutdownCancellations())


def tune_gc() -> None:
    """Garbage-collector settings for a long-running server or collector process.

    Thousands of rollouts in flight keep millions of objects alive, and CPython 3.11's default
    thresholds (700, 10, 10) then rescan them all, over and over: measured at 4,000 rollouts in
    flight, 46% of the wall time went to the collector (bench/overhead.md). Objects from start-up
    are frozen (never rescanned) and collections run ~70x less often; cyclic garbage lives a little
    longer, which costs a little memory."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def raise_open_file_limit() -> int:
    """Raise this process's open-file limit to the hard limit (at most 65,535); return the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(65535, hard) if hard != resource.RLIM_INFINITY else 65535
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft
