"""Start, watch and stop a deployment: the head server plus one process per server instance.

*Where* a server runs is behind :class:`Placement`: :class:`LocalProcesses` (child processes of
this one, the default) or :class:`ngym.launch.ray_placement.RayPlacement` (each server a process
on a Ray cluster's node, with ``ray: true`` / ``ray_head_node_address``; imported only then); the
rest of the launcher only places, starts, polls and stops handles.

An instance with ``num_replicas: N`` is N processes, each on its own port (``replica_ports``),
named ``<name>#<i>`` here (the first keeps ``<name>``); clients balance across them
(:class:`~ngym.server.client.ReplicaPool`), ``/server_instances`` lists each.

A server (or replica) that dies while the deployment runs is restarted (``max_restarts`` times, with an
exponential ``restart_backoff_s``), reported by name with its last log lines, so the other
environments keep serving. Children get only the secrets they need: servers that are not model
servers see every secret of the config masked, except in their own (resolved) settings; secret
values are masked in the log lines the launcher forwards.
"""

from __future__ import annotations

import collections
import os
import secrets
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

import httpx
import uvicorn
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ngym.config.deployment import Deployment, ServerSpec, check_ports_free
from ngym.config.paths import PARENT_DIR
from ngym.config.secrets import mask_secrets, scrub, secret_values
from ngym.errors import DeploymentError
from ngym.server.process import CONFIG_ENV, INSTANCE_ENV, PARENT_ENV, PORT_ENV
from ngym.server.auth import TOKEN_ENV, TOKEN_HEADER, TokenMiddleware, is_loopback, write_token_file
from ngym.server.head import build_head_app
from ngym.server.host import HOSTED_ENV
from ngym.server.sessions import REPLICA_ENV, SECRET_ENV

class Handle(Protocol):
    spec: ServerSpec

    @property
    def pid(self) -> int | None: ...
    @property
    def started_at(self) -> float: ...

    @property
    def node(self) -> str | None:
        """The address of the machine it runs on when that is not this one (Ray), else None."""
        ...

    def returncode(self) -> int | None: ...
    def log_tail(self) -> list[str]: ...
    def terminate(self) -> None: ...
    def kill(self) -> None: ...
    def wait(self, timeout: float) -> int | None: ...


class Placement(Protocol):
    #: whether the servers run on this machine (their ports are checked here before anything starts)
    servers_here: bool

    def prepare(self, deployment: Deployment, units: dict[str, ServerSpec], timeout_s: float) -> None:
        """Before any server starts: decide where each unit runs; a placement on other machines
        writes each unit's address (``host``, ``port``) into it and into ``deployment.config``."""
        ...

    def start(self, spec: ServerSpec, env: dict[str, str]) -> Handle: ...

    def start_group(self, specs: list[ServerSpec], env: dict[str, str]) -> dict[str, Handle]:
        """Start ``specs`` hosted together (``colocate``): one handle per server."""
        ...

    def close(self) -> None:
        """After every server stopped: release what :meth:`prepare` took (Ray: actors, a cluster we started)."""
        ...


def server_command(spec: ServerSpec, env: dict[str, str]) -> tuple[list[str], Path, dict[str, str]]:
    """How a server process is started: argv, working directory and environment (``python`` first
    in argv: the interpreter of whichever machine runs it)."""
    entry = spec.dir / spec.entrypoint
    if not entry.is_file():
        raise DeploymentError(
            f"{spec.name}: entrypoint {str(entry)!r} does not exist. Check '{spec.type}/{spec.impl}' and "
            f"'entrypoint' in {spec.source or 'the config'}."
        )
    # the project the server folder sits in (``<root>/resources_servers/<name>``) comes before the
    # ngym checkout, so ``from resources_servers.<name>.x import ...`` finds the user's folder
    project = spec.dir.parent.parent if spec.dir.parent.name == spec.type else None
    paths = (str(spec.dir), str(project or ""), str(PARENT_DIR), env.get("PYTHONPATH", ""))
    python_path = os.pathsep.join(dict.fromkeys(p for p in paths if p))
    return ["python", "-u", spec.entrypoint], spec.dir, {**env, "PYTHONPATH": python_path, "PYTHONUNBUFFERED": "1"}


def group_command(specs: list[ServerSpec], env: dict[str, str]) -> tuple[list[str], Path, dict[str, str]]:
    """How the process hosting the co-located ``specs`` is started (see :func:`server_command`)."""
    names = ",".join(s.name for s in specs)
    python_path = os.pathsep.join(p for p in (str(PARENT_DIR), env.get("PYTHONPATH", "")) if p)
    return (["python", "-u", "-m", "ngym.server.host"], PARENT_DIR,
            {**env, HOSTED_ENV: names, "PYTHONUNBUFFERED": "1", "PYTHONPATH": python_path})


@dataclass
class ProcessHandle:
    spec: ServerSpec
    process: subprocess.Popen[bytes]
    out: IO[str]
    started_at: float = field(default_factory=time.time)
    tail: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=30))
    label: str = ""
    #: values masked in forwarded log lines
    secrets: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        self._pump = threading.Thread(target=self._pump_logs, name=f"log-{self.spec.name}", daemon=True)
        self._pump.start()

    @property
    def pid(self) -> int | None:
        return self.process.pid

    @property
    def node(self) -> str | None:
        return None

    def _pump_logs(self) -> None:
        assert self.process.stdout is not None
        prefix = f"({self.label or self.spec.name}) "
        for raw in self.process.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if self.secrets:
                line = scrub(line, set(self.secrets))
            self.tail.append(line)
            try:
                self.out.write(prefix + line + "\n")
                self.out.flush()
            except (ValueError, OSError):
                pass

    def returncode(self) -> int | None:
        return self.process.poll()

    def log_tail(self) -> list[str]:
        self._pump.join(timeout=0.5) if self.process.poll() is not None else None
        return list(self.tail)

    def terminate(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()

    def wait(self, timeout: float) -> int | None:
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None


@dataclass
class SharedHandle:
    """A server hosted in a process with others: its state is the process's."""

    spec: ServerSpec
    host: Handle

    @property
    def pid(self) -> int | None:
        return self.host.pid

    @property
    def started_at(self) -> float:
        return self.host.started_at

    @property
    def node(self) -> str | None:
        return self.host.node

    def returncode(self) -> int | None:
        return self.host.returncode()

    def log_tail(self) -> list[str]:
        return self.host.log_tail()

    def terminate(self) -> None:
        self.host.terminate()

    def kill(self) -> None:
        self.host.kill()

    def wait(self, timeout: float) -> int | None:
        return self.host.wait(timeout)


@dataclass
class InThisProcess:
    """A server the caller hosts in this very process (:class:`ngym.server.host.HostedServers`)."""

    spec: ServerSpec
    started_at: float = field(default_factory=time.time)

    @property
    def pid(self) -> int | None:
        return os.getpid()

    @property
    def node(self) -> str | None:
        return None

    def returncode(self) -> int | None:
        return None

    def log_tail(self) -> list[str]:
        return []

    def terminate(self) -> None:
        return None

    def kill(self) -> None:
        return None

    def wait(self, timeout: float) -> int | None:
        return 0


class LocalProcesses:
    """Each server is a child process of the launcher, in the launcher's Python environment."""

    servers_here = True

    def __init__(self, out: IO[str] | None = None, secrets: frozenset[str] = frozenset()) -> None:
        self.out = out or sys.stdout
        self.secrets = secrets

    def prepare(self, deployment: Deployment, units: dict[str, ServerSpec], timeout_s: float) -> None:
        return None  # every server listens where the config says, on this machine

    def _spawn(self, argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, *argv[1:]],
            cwd=cwd,
            env={**env, PARENT_ENV: str(os.getpid())},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def start(self, spec: ServerSpec, env: dict[str, str]) -> Handle:
        return ProcessHandle(spec, self._spawn(*server_command(spec, env)), self.out, secrets=self.secrets)

    def start_group(self, specs: list[ServerSpec], env: dict[str, str]) -> dict[str, Handle]:
        names = ",".join(s.name for s in specs)
        process = self._spawn(*group_command(specs, env))
        host = ProcessHandle(specs[0], process, self.out, label=f"hosted: {names}", secrets=self.secrets)
        return {spec.name: SharedHandle(spec, host) for spec in specs}

    def close(self) -> None:
        return None


class Launcher:
    """Runs one deployment. ``start()`` returns when every server answers; ``stop()`` leaves no
    process behind. Usable from a CLI (``ng_run``) or from Python (trainers, one-shot collection)."""

    def __init__(
        self,
        deployment: Deployment,
        placement: Placement | None = None,
        out: IO[str] | None = None,
        startup_timeout_s: float = 180.0,
        host_colocated_here: bool = False,
        max_restarts: int = 3,
        restart_backoff_s: float = 1.0,
    ) -> None:
        """``host_colocated_here``: the co-located servers are not started as a child process; the
        caller hosts them in this process (and so waits for them itself). ``max_restarts``: times
        :meth:`run_forever` restarts a server that died (0: a death stops the deployment), waiting
        ``restart_backoff_s`` × 2^(restarts so far) first."""
        if max_restarts < 0 or restart_backoff_s < 0:
            raise DeploymentError(
                f"max_restarts ({max_restarts}) and restart_backoff_s ({restart_backoff_s}) must be >= 0."
            )
        self.deployment = deployment
        self.host_colocated_here = host_colocated_here
        self.out = out or sys.stdout
        self.secrets = frozenset(secret_values(OmegaConf.to_container(deployment.config, resolve=False)))
        if placement is None and deployment.ray is not None:
            raise DeploymentError(
                "The config asks to place the servers on Ray (ray / ray_head_node_address), which ng_run and "
                "ngym.training's deploy() do; here (a process hosting its own servers) they run on this machine. "
                "Remove ray and ray_head_node_address, or start the servers with ng_run."
            )
        self.placement = placement or LocalProcesses(self.out, self.secrets)
        self.max_restarts = max_restarts
        self.restart_backoff_s = restart_backoff_s
        self.restarts: dict[str, int] = {}
        #: how each server that died last ended (``/server_instances``' ``last_exit``, shown by ng_status)
        self.last_exits: dict[str, dict[str, Any]] = {}
        self._env: dict[str, str] = {}
        self.startup_timeout_s = startup_timeout_s
        #: every process to run, by key (``name``, or ``name#<i>`` for replicas after the first)
        self.units: dict[str, ServerSpec] = {
            r.key: r for spec in deployment.servers.values() for r in spec.replicas()
        }
        self.handles: dict[str, Handle] = {}
        self._head: uvicorn.Server | None = None
        self._head_thread: threading.Thread | None = None
        self._stopping = False
        self.token = ""
        self.token_path: Path | None = None

    # ---- start -------------------------------------------------------------------------------

    def _child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env[CONFIG_ENV] = OmegaConf.to_yaml(self.deployment.config)
        env.setdefault(SECRET_ENV, secrets.token_hex(32))
        env.setdefault(TOKEN_ENV, secrets.token_urlsafe(32))
        env.pop("NEMO_GYM_CONFIG_DICT", None)
        env.pop(REPLICA_ENV, None)
        env.pop(PORT_ENV, None)
        return env

    def _start_unit(self, unit: ServerSpec) -> Handle:
        env = {**self._env_for([unit]), INSTANCE_ENV: unit.name}
        if len(unit.replica_ports) > 1:
            env.update({REPLICA_ENV: str(unit.replica), PORT_ENV: str(unit.port)})
        return self.placement.start(unit, env)

    def _env_for(self, specs: list[ServerSpec]) -> dict[str, str]:
        """The environment of a child hosting ``specs``: a model server gets the whole config; any
        other server gets every secret masked except in its own settings (resolved first, so
        its own ``${policy_api_key}``-style references still hold)."""
        env = dict(self._env)
        if any(s.type == "responses_api_models" for s in specs):
            return env
        config = self.deployment.config
        plain = OmegaConf.to_container(config, resolve=False)
        assert isinstance(plain, dict)
        masked = mask_secrets(plain)
        for spec in specs:
            try:
                node = config[spec.name]
                masked[spec.name] = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
            except OmegaConfBaseException:
                masked[spec.name] = plain.get(spec.name)
        env[CONFIG_ENV] = OmegaConf.to_yaml(OmegaConf.create(masked))
        return env

    def _start_head(self) -> None:
        app: Any = build_head_app(self.deployment, self.instances)
        if not is_loopback(self.deployment.head.host):
            app = TokenMiddleware(app, self.token)
        config = uvicorn.Config(
            app, host=self.deployment.head.host, port=self.deployment.head.port, log_level="warning", access_log=False
        )
        self._head = uvicorn.Server(config)  # in a thread, uvicorn leaves the signal handlers alone
        self._head_thread = threading.Thread(target=self._head.run, name="ngym-head", daemon=True)
        self._head_thread.start()

    def start(self) -> None:
        check_ports_free(self.deployment, servers=self.placement.servers_here)
        t0 = time.monotonic()
        try:
            self.placement.prepare(self.deployment, self.units, self.startup_timeout_s)
        except BaseException:
            self.placement.close()
            raise
        env = self._env = self._child_env()
        os.environ.setdefault(SECRET_ENV, env[SECRET_ENV])
        os.environ.setdefault(TOKEN_ENV, env[TOKEN_ENV])  # this process's clients carry the token
        self.token = env[TOKEN_ENV]
        if not all(is_loopback(h) for h in [self.deployment.head.host, *(s.host for s in self.deployment.servers.values())]):
            self.token_path = write_token_file(self.deployment.head.port, self.token)
        try:
            self._start_head()
            hosted = [self.deployment.servers[n] for n in self.deployment.colocated]
            if hosted and self.host_colocated_here:
                self.handles.update({spec.name: InThisProcess(spec) for spec in hosted})
            elif hosted:
                self.handles.update(self.placement.start_group(hosted, self._env_for(hosted)))
            for key, unit in self.units.items():
                if key not in self.handles:
                    self.handles[key] = self._start_unit(unit)
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        self.ready_after_s = time.monotonic() - t0

    def _wait_ready(self, names: list[str] | None = None) -> None:
        pending = {"head_server": self.deployment.head.url} if names is None else {}
        pending.update(
            (n, s.url) for n, s in self.units.items()
            if not isinstance(self.handles.get(n), InThisProcess) and (names is None or n in names)
        )
        deadline = time.monotonic() + self.startup_timeout_s
        with httpx.Client(timeout=2.0, trust_env=False, headers={TOKEN_HEADER: self.token}) as http:
            while pending:
                self.raise_if_died()
                for name, url in list(pending.items()):
                    try:
                        http.get(url + "/")
                    except httpx.HTTPError:
                        continue
                    del pending[name]
                if not pending:
                    break
                if time.monotonic() > deadline:
                    raise DeploymentError(
                        f"Servers not ready after {self.startup_timeout_s:g} s: {sorted(pending)}. Their logs are above; "
                        f"raise +startup_timeout_s=... if they are just slow."
                    )
                time.sleep(0.05)

    # ---- watch -------------------------------------------------------------------------------

    def _died(self) -> tuple[str, Handle, int] | None:
        for name, handle in self.handles.items():
            code = handle.returncode()
            if code is not None and not self._stopping:
                return name, handle, code
        return None

    @staticmethod
    def _death(name: str, handle: Handle, code: int) -> str:
        tail = "\n".join(f"    {line}" for line in handle.log_tail()[-15:]) or "    (no output)"
        spec = handle.spec
        which = f"replica {spec.replica} of {len(spec.replica_ports)} of {spec.name!r}, " if len(spec.replica_ports) > 1 else ""
        where = f"on node {handle.node}, " if handle.node else ""
        return (f"Server {name!r} ({which}{spec.type}/{spec.impl}, {where}pid {handle.pid}, {spec.url}) exited with code {code}. "
                f"Its last log lines:\n{tail}")

    def raise_if_died(self) -> None:
        died = self._died()
        if died is not None:
            raise DeploymentError(self._death(*died))

    def restart_if_died(self) -> None:
        """Restart a server that died (with the others of its process, if co-located), after a
        backoff; raise :class:`DeploymentError` once it has used up ``max_restarts``."""
        died = self._died()
        if died is None:
            return
        name, handle, code = died
        done = self.restarts.get(name, 0)
        message = self._death(name, handle, code)
        self.last_exits[name] = {"code": code, "at": time.time(), "node": handle.node, "pid": handle.pid,
                                 "log_tail": handle.log_tail()[-15:]}
        if done >= self.max_restarts or isinstance(handle, InThisProcess):
            more = f" It was restarted {done} time(s) (+max_restarts={self.max_restarts})." if self.max_restarts else ""
            raise DeploymentError(message + more)
        delay = self.restart_backoff_s * 2**done
        print(f"ngym: {message}\nngym: restarting {name!r} in {delay:g} s (restart {done + 1} of {self.max_restarts}); "
              f"the other servers keep serving.", file=self.out, flush=True)
        time.sleep(delay)
        group = [n for n, h in self.handles.items() if h is handle or (
            isinstance(h, SharedHandle) and isinstance(handle, SharedHandle) and h.host is handle.host)]
        specs = [self.units[n] for n in group]
        for n in group:
            self.restarts[n] = self.restarts.get(n, 0) + 1
        if isinstance(handle, SharedHandle):
            self.handles.update(self.placement.start_group(specs, self._env_for(specs)))
        else:
            self.handles[name] = self._start_unit(specs[0])
        try:
            self._wait_ready(group)
        except DeploymentError:
            if self._died() is None:
                raise
            return  # died again while starting: the next poll counts another restart, or gives up
        print(f"ngym: {', '.join(map(repr, group))} restarted and answering.", file=self.out, flush=True)

    def instances(self) -> list[dict[str, Any]]:
        now = time.time()
        rows = []
        for key, spec in self.units.items():
            handle = self.handles.get(key)
            alive = handle is not None and handle.returncode() is None
            rows.append(
                {
                    "name": spec.name,
                    "replica": spec.replica,
                    "num_replicas": max(1, len(spec.replica_ports)),
                    "server_type": spec.type,
                    "kind": spec.kind,
                    "process_name": f"{key}[{spec.impl}]",
                    "entrypoint": spec.entrypoint,
                    "dir_path": str(spec.dir),
                    "config_path": spec.source,
                    "host": spec.host,
                    "port": spec.port,
                    "url": spec.url,
                    "node": handle.node if handle else None,
                    "node_id": getattr(handle, "node_id", None),
                    "supervisor_pid": getattr(handle, "supervisor_pid", None),
                    "pid": handle.pid if handle else None,
                    "status": "running" if alive else "exited",
                    "restarts": self.restarts.get(key, 0),
                    "last_exit": self.last_exits.get(key),
                    "start_time": handle.started_at if handle else None,
                    "uptime_seconds": now - handle.started_at if handle else 0.0,
                }
            )
        return rows

    def table(self) -> str:
        rows = [("NAME", "KIND", "URL", "PID")]
        rows += [(r["process_name"].rpartition("[")[0], r["kind"], r["url"], str(r["pid"])) for r in self.instances()]
        rows.append(("head_server", "head", self.deployment.head.url, str(os.getpid())))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)

    def run_forever(self, poll_s: float = 0.5) -> None:
        """Watch the servers until interrupted: restart the ones that die (see ``max_restarts``)."""
        while True:
            self.restart_if_died()
            time.sleep(poll_s)

    # ---- stop --------------------------------------------------------------------------------

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop every server (SIGTERM, then SIGKILL after ``grace_s``) and the head server."""
        self._stopping = True
        for handle in self.handles.values():
            handle.terminate()
        deadline = time.monotonic() + grace_s
        for handle in self.handles.values():
            if handle.wait(max(0.0, deadline - time.monotonic())) is None:
                handle.kill()
                handle.wait(2.0)
        if self._head is not None:
            self._head.should_exit = True
            if self._head_thread is not None:
                self._head_thread.join(timeout=5.0)
        self._head = None
        self.placement.close()
        if self.token_path is not None:
            self.token_path.unlink(missing_ok=True)

    def __enter__(self) -> Launcher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

