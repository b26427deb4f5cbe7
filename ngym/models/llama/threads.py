"""How many CPU threads llama-server should use here, from how busy the CPUs are right now.

llama.cpp's threads meet at a barrier after every matrix product, so one thread that the kernel
descheduled stalls all of them: on this project's 2-core machine, 2 threads decode 38.5 tokens/s on
idle CPUs but 1.4 tokens/s beside one busy process, where 1 thread still decodes 21.9 (bench/README.md,
issue 16). So: every usable CPU when the CPUs are idle, otherwise leave the busy ones and one more
to the rest of the machine.

    python -m ngym.models.llama.threads        # prints the number; the reason on stderr
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable

__all__ = ["busy_cpus", "suggest_threads"]

#: below this many busy cores the CPUs count as idle
IDLE_BELOW = 0.35
#: llama.cpp gains little past this many threads on a CPU-only small model
MAX_THREADS = 8


def _cpu_times(stat: str) -> tuple[float, float]:
    """(busy, total) jiffies of the aggregate ``cpu`` line of /proc/stat."""
    for line in stat.splitlines():
        if line.startswith("cpu "):
            fields = [float(x) for x in line.split()[1:]]
            idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
            total = sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest is inside user)
            return total - idle, total
    raise ValueError("no aggregate 'cpu' line in /proc/stat")


def busy_cpus(window_s: float = 1.0, read: Callable[[], str] | None = None, sleep: Callable[[float], None] = time.sleep) -> float:
    """Cores busy on average during ``window_s`` (all processes, this one included)."""
    read = read or (lambda: open("/proc/stat", encoding="ascii").read())
    busy0, total0 = _cpu_times(read())
    sleep(window_s)
    busy1, total1 = _cpu_times(read())
    cpus = os.cpu_count() or 1
    return 0.0 if total1 <= total0 else cpus * (busy1 - busy0) / (total1 - total0)


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def suggest_threads(cpus: int, busy: float) -> int:
    """Every usable CPU when they are idle; otherwise the idle ones less one, at least 1."""
    if busy < IDLE_BELOW:
        return max(1, min(cpus, MAX_THREADS))
    return max(1, min(MAX_THREADS, math.floor(cpus - busy) - 1))


def main() -> int:
    cpus = usable_cpus()
    try:
        busy = busy_cpus()
    except (OSError, ValueError) as e:
        print(f"threads: cannot read the CPU load ({e}); using 1", file=sys.stderr)
        print(1)
        return 0
    threads = suggest_threads(cpus, busy)
    why = "idle" if busy < IDLE_BELOW else "busy: llama.cpp's threads stall each other beside other work"
    print(f"llama-server threads: {threads} of {cpus} CPUs ({busy:.2f} cores in use: {why})", file=sys.stderr)
    print(threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
