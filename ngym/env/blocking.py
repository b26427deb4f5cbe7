"""Blocking work off the event loop: a tool or ``verify`` that runs code, a solver or a slow parser
awaits :func:`run_blocking` (a thread) or :func:`run_in_process` (another process, for CPU-bound
pure-Python work that holds the GIL), so the server keeps serving every other episode meanwhile."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

#: threads for blocking work (``NGYM_BLOCKING_THREADS``; the default executor's 6 on 2 cores would queue sandboxes)
THREADS_ENV = "NGYM_BLOCKING_THREADS"
#: processes for CPU-bound work (``NGYM_BLOCKING_PROCESSES``; default: the number of CPUs)
PROCESSES_ENV = "NGYM_BLOCKING_PROCESSES"

_threads: ThreadPoolExecutor | None = None
_processes: ProcessPoolExecutor | None = None


def _thread_pool() -> ThreadPoolExecutor:
    global _threads
    if _threads is None:
        _threads = ThreadPoolExecutor(int(os.environ.get(THREADS_ENV, "64")), thread_name_prefix="ngym-blocking")
    return _threads


def _process_pool() -> ProcessPoolExecutor:
    global _processes
    if _processes is None:
        workers = int(os.environ.get(PROCESSES_ENV, "0")) or os.cpu_count() or 1
        # forkserver: a server process has threads (event loop, pools); forking it as is is unsafe
        _processes = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver"))
    return _processes


async def run_blocking(fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
    """``fn(*args, **kwargs)`` in a worker thread; ``self.task`` / ``self.state`` stay readable there."""
    context = contextvars.copy_context()
    call = functools.partial(context.run, fn, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_thread_pool(), call)


async def run_in_process(fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
    """``fn(*args, **kwargs)`` in a worker process (``fn`` and its arguments must pickle: a
    module-level function, plain values)."""
    call = functools.partial(fn, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_process_pool(), call)
