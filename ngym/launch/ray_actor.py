"""The Ray actor that runs one server process on a node of a Ray cluster (or the process hosting
co-located servers), for :class:`ngym.launch.ray_placement.RayPlacement`.

It lives as long as the deployment: :meth:`ServerSupervisor.where` says where it landed (the
node's address, a port free there); :meth:`ServerSupervisor.start` starts the server as its child
(again after a crash: same node, same port), keeps its last log lines for the launcher to read
(:meth:`ServerSupervisor.logs`), and :meth:`ServerSupervisor.wait` answers when it exits. The server
ends with this actor (``PR_SET_PDEATHSIG``, :func:`ngym.server.process.die_with_launcher`), so
killing the actor, or the launcher's Ray job ending, leaves no server behind on any node.

Imported only on Ray workers and by ``RayPlacement``: nothing else in ngym imports Ray.
"""

from __future__ import annotations

import collections
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

#: the pid of the process a server must die with (ngym.server.process.PARENT_ENV)
PARENT_ENV = "NGYM_LAUNCHER_PID"
#: lines of a server's output kept on its node for the launcher
KEEP_LINES = 2000


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str) -> int:
    """A port free on ``host`` (and on every address of this node), picked by the kernel."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if port_is_free("0.0.0.0", port):
            return port


class ServerSupervisor:
    """One server process on this node (see the module's docstring). Methods run in threads
    (a threaded actor): :meth:`wait` and :meth:`logs` block while the others answer."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.lines: collections.deque[str] = collections.deque(maxlen=KEEP_LINES)
        self.total = 0  # lines read so far; the first kept one is total - len(lines)
        self.changed = threading.Condition()
        self.eof = True  # the server's output was read to its end (it exited)
        self.ip = ""

    def where(self, wanted: list[int | None], pinned: list[bool]) -> dict[str, Any]:
        """This node's address, and a port here for each of ``wanted``: a pinned one (the config
        sets ``port``) must be free; another is kept when free, else (and for None) the kernel
        picks a free one (outside Ray's own worker port range, 10002-19999 by default)."""
        import ray

        self.ip = ray.util.get_node_ip_address()
        chosen: list[int] = []
        for port, must in zip(wanted, pinned, strict=True):
            if port and port not in chosen and port_is_free(self.ip, port) and port_is_free("0.0.0.0", port):
                chosen.append(port)
            elif must:
                raise RuntimeError(
                    f"port {port} (set by the config) is taken on node {self.ip}; remove 'port' to have one picked"
                )
            else:
                chosen.append(free_port(self.ip))
        return {
            "ip": self.ip,
            "node_id": ray.get_runtime_context().get_node_id(),
            "hostname": socket.gethostname(),
            "ports": chosen,
            "actor_pid": os.getpid(),
        }

    def start(self, argv: list[str], cwd: str, env: dict[str, str], unset: list[str]) -> tuple[int, int]:
        """Start the server (``argv[0] == "python"``: this node's interpreter); returns its pid and
        the index of its first log line (for :meth:`logs`)."""
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError(f"a server is already running here (pid {self.process.pid})")
        full = {k: v for k, v in os.environ.items() if k not in unset}
        full.update(env)
        full[PARENT_ENV] = str(os.getpid())
        command = [sys.executable if argv[0] == "python" else argv[0], *argv[1:]]
        with self.changed:
            first = self.total
            self.lines.append(f"ngym: starting {' '.join(command)} in {cwd} on {self.ip or socket.gethostname()}")
            self.total += 1
        self.eof = False
        self.process = subprocess.Popen(
            command, cwd=cwd, env=full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        threading.Thread(target=self._pump, args=(self.process,), daemon=True).start()
        return self.process.pid, first

    def _pump(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            with self.changed:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self.total += 1
                self.changed.notify_all()
        process.wait()
        with self.changed:
            self.eof = True
            self.changed.notify_all()

    def wait(self) -> int:
        """Block until the server exits; its exit code (negative: the signal that ended it)."""
        process = self.process
        assert process is not None, "start() first"
        return process.wait()

    def logs(self, since: int, timeout_s: float) -> tuple[int, list[str], bool]:
        """Lines after the first ``since`` (waiting up to ``timeout_s`` for one): the count so far,
        the new lines, and whether the server has exited and every line was read."""
        deadline = time.monotonic() + timeout_s
        with self.changed:
            while self.total <= since and not self.eof and time.monotonic() < deadline:
                self.changed.wait(max(0.0, deadline - time.monotonic()))
            first = self.total - len(self.lines)
            new = list(self.lines)[max(0, since - first):]
            return self.total, new, self.eof

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the server (SIGTERM: stop, SIGKILL: kill) if it runs."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)

    def stop(self, grace_s: float) -> int | None:
        """SIGTERM, then SIGKILL after ``grace_s``; the exit code."""
        if self.process is None:
            return None
        self.signal(signal.SIGTERM)
        try:
            return self.process.wait(grace_s)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            return self.process.wait(5)
