"""llama-server's thread count from the CPUs' load (ngym.models.llama.threads)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ngym.models.llama.threads import busy_cpus, suggest_threads


def stat(user: int, system: int, idle: int, iowait: int = 0) -> str:
    return f"cpu  {user} 0 {system} {idle} {iowait} 0 0 0 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n"


def test_busy_cpus_is_the_busy_share_of_the_window_times_the_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    snapshots = iter([stat(100, 50, 1000), stat(100 + 60, 50 + 15, 1000 + 125)])  # 75 busy of 200 jiffies
    assert busy_cpus(0.5, read=lambda: next(snapshots), sleep=lambda s: None) == pytest.approx(0.75)
    snapshots = iter([stat(10, 10, 10, iowait=5), stat(10, 10, 110, iowait=105)])  # iowait counts as idle
    assert busy_cpus(0.5, read=lambda: next(snapshots), sleep=lambda s: None) == 0.0
    with pytest.raises(ValueError, match="'cpu' line"):
        busy_cpus(0.0, read=lambda: "intr 1 2 3\n", sleep=lambda s: None)


@pytest.mark.parametrize(
    ("cpus", "busy", "threads"),
    [(2, 0.0, 2), (2, 0.3, 2), (2, 0.5, 1), (2, 1.9, 1), (1, 0.0, 1), (8, 0.1, 8), (8, 2.0, 5), (8, 7.5, 1), (64, 0.0, 8)],
)
def test_all_cpus_when_idle_else_the_idle_ones_less_one(cpus: int, busy: float, threads: int) -> None:
    assert suggest_threads(cpus, busy) == threads


def test_the_command_prints_a_number_and_says_why() -> None:
    done = subprocess.run([sys.executable, "-m", "ngym.models.llama.threads"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and int(done.stdout.strip()) >= 1
    assert "llama-server threads:" in done.stderr and "CPUs" in done.stderr
