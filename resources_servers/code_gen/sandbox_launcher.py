"""Sandbox launcher: run as root (or any user) by :mod:`code_sandbox`, never imported.

``python -I sandbox_launcher.py '<settings JSON>'``; the job arrives on stdin and is read by the worker.
Standard library only, one process, no threads: it isolates itself, then ``exec``s the worker.

With ``namespaces``: new mount, network, PID, IPC and UTS namespaces; the forked child is PID 1 of
the new PID namespace (when it exits the kernel kills every process left in it). The child mounts a
fresh ``/proc`` (no host processes visible), a size-limited tmpfs on ``/tmp`` and ``/dev/shm``
(the private work dir lives there and vanishes with the namespace) and an empty read-only tmpfs over
each hidden path (the environment's data, the project), sets the resource limits, drops to the
unprivileged uid/gid, and executes the worker. The network namespace has no interface but a
loopback that is down: no connection can be made anywhere.

Without namespaces (not root, or the kernel refuses): the grader made the work dir; only the
resource limits and, where possible, the uid change apply.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import sys

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REC, MS_PRIVATE = 16384, 1 << 18
EXIT_NO_NAMESPACES = 97
EXIT_SETUP_FAILED = 98

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(source: str, target: str, fstype: str, flags: int, data: str = "") -> None:
    _check(_libc.mount(source.encode(), target.encode(), fstype.encode(), flags, data.encode() or None),
           f"mount {fstype} on {target}")


def _limits(limits: dict[str, int]) -> None:
    table = {
        "cpu_s": resource.RLIMIT_CPU, "memory_bytes": resource.RLIMIT_AS, "file_size_bytes": resource.RLIMIT_FSIZE,
        "processes": resource.RLIMIT_NPROC, "open_files": resource.RLIMIT_NOFILE,
    }
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    for key, which in table.items():
        if key in limits:
            value = int(limits[key])
            resource.setrlimit(which, (value, value))


def _drop(uid: int | None, gid: int | None) -> None:
    if uid is None or os.geteuid() != 0:
        return
    os.setgroups([])
    os.setgid(gid if gid is not None else uid)
    os.setuid(uid)


def _exec_worker(settings: dict[str, object], workdir: str, worker_src: bytes) -> None:
    path = os.path.join(workdir, "worker.py")
    with open(path, "wb") as f:
        f.write(worker_src)
    os.chmod(path, 0o444)
    uid = settings.get("uid")
    gid = settings.get("gid")
    if isinstance(uid, int) and os.geteuid() == 0:
        os.chown(workdir, uid, gid if isinstance(gid, int) else uid)
    os.chmod(workdir, 0o700)
    limits = settings.get("limits")
    _limits(limits if isinstance(limits, dict) else {})
    _drop(uid if isinstance(uid, int) else None, gid if isinstance(gid, int) else None)
    os.chdir(workdir)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8",
           "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0", "PYTHONIOENCODING": "utf-8"}
    python = str(settings["python"])
    os.execve(python, [python, "-I", "-S", "-B", path], env)


def _namespaced(settings: dict[str, object], worker_src: bytes) -> int:
    flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
    if _libc.unshare(flags) != 0:
        err = ctypes.get_errno()
        sys.stderr.write(f"sandbox: unshare failed: {os.strerror(err)}\n")
        return EXIT_NO_NAMESPACES
    pid = os.fork()
    if pid == 0:  # PID 1 of the new namespace
        try:
            _mount("none", "/", "", MS_REC | MS_PRIVATE)
            _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
            size = int(str(settings.get("tmpfs_mb", 64)))
            _mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"size={size}m,mode=1777")
            if os.path.isdir("/dev/shm"):
                _mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=1m,mode=1777")
            hide = settings.get("hide")
            for target in hide if isinstance(hide, list) else []:
                if os.path.isdir(str(target)):
                    _mount("tmpfs", str(target), "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4k,mode=755")
            workdir = "/tmp/sandbox"
            os.mkdir(workdir, 0o700)
            _exec_worker(settings, workdir, worker_src)
        except BaseException as e:  # noqa: BLE001 - report any set-up failure, then die
            os.write(2, f"sandbox: set-up failed: {e!r}\n".encode())
        os._exit(EXIT_SETUP_FAILED)
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def main() -> int:
    settings = json.loads(sys.argv[1])
    worker_path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sandbox_worker.py")
    with open(worker_path, "rb") as f:
        worker_src = f.read()
    if settings.get("namespaces"):
        return _namespaced(settings, worker_src)
    try:
        _exec_worker(settings, str(settings["workdir"]), worker_src)
    except BaseException as e:  # noqa: BLE001
        os.write(2, f"sandbox: set-up failed: {e!r}\n".encode())
    return EXIT_SETUP_FAILED


if __name__ == "__main__":
    sys.exit(main())
