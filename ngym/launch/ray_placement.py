"""Servers placed on a Ray cluster: :class:`RayPlacement`, behind the launcher's ``Placement``.

With ``ray: true`` (a local cluster, started here and stopped on exit) or
``ray_head_node_address: <host:port>|auto`` (a running cluster, joined and left running), each
server process (each replica; the process hosting co-located servers) is the child of one Ray
actor (:class:`ngym.launch.ray_actor.ServerSupervisor`) that Ray places on a node as the instance's
``placement`` asks (``num_cpus``, ``num_gpus``, custom ``resources``, ``node_labels``,
``scheduling_strategy``). A process that already runs Ray (a trainer) keeps its connection: the
servers go on its cluster and it stays connected after the deployment stops.

:meth:`RayPlacement.prepare` creates the actors first and asks each where it landed: the node's
routable address (``ray.util.get_node_ip_address()``) and a port free there. Those addresses go
into the deployment's config (``host``/``port``, ``replica_hosts``/``replica_ports``) before any
server starts, so every server, the head server's ``/global_config_dict_yaml`` and every client
find the servers as with local processes; ``/server_instances`` says which node each runs on.

A server that dies is started again by the launcher through its actor: same node, same port, so it
rejoins its pool. If the actor is gone (its node died), a new one is placed (preferring the same
node), possibly elsewhere: the new address goes into the config the head server serves.

Ray is imported here only inside functions: without the Ray keys nothing in ngym imports it.
"""

from __future__ import annotations

import collections
import contextlib
import importlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from omegaconf import OmegaConf

from ngym.config.deployment import Deployment, ServerSpec
from ngym.config.schema import RayPlacementConfig
from ngym.config.secrets import scrub, secret_values
from ngym.errors import DeploymentError
from ngym.launch.launcher import Handle, SharedHandle, group_command, server_command
from ngym.launch.ray_actor import ServerSupervisor
from ngym.server.process import HOST_ENV, PORT_ENV

#: seconds one call to an actor may take before the launcher treats its node as unreachable
CALL_TIMEOUT_S = 60.0


def placement_for(deployment: Deployment, out: IO[str] | None = None) -> RayPlacement | None:
    """The Ray placement the deployment's config asks for (``ray`` / ``ray_head_node_address``),
    or None: its servers run as local processes."""
    return RayPlacement(deployment, out) if deployment.ray is not None else None


@contextlib.contextmanager
def _own_signal_handlers() -> Iterator[None]:
    """``ray.init`` replaces the driver's SIGTERM handler (``sys.exit``): keep ngym's (Ctrl-C and
    SIGTERM stop every server first)."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        if threading.current_thread() is threading.main_thread():
            for s, handler in saved.items():
                signal.signal(s, handler)


def _token_auth_mode() -> None:
    """Ray clusters started with ``RAY_AUTH_MODE=token`` (what ``ray.init`` does by default) require their auth token; a client
    that has the token (``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``) but no
    ``RAY_AUTH_MODE`` does not send it. Send it when it is there and nothing else was asked."""
    if "RAY_AUTH_MODE" in os.environ:
        return
    token_file = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    if os.environ.get("RAY_AUTH_TOKEN") or token_file.is_file():
        os.environ["RAY_AUTH_MODE"] = "token"
        with contextlib.suppress(ImportError, AttributeError):  # Ray reads its settings at import: again
            importlib.import_module("ray._raylet").Config.initialize("")


def _merged(specs: list[ServerSpec]) -> RayPlacementConfig:
    """The placement of a process hosting ``specs``: the sums of their requests, all their labels."""
    configs = [RayPlacementConfig.model_validate(s.placement or {}) for s in specs]
    resources: dict[str, float] = collections.defaultdict(float)
    labels: dict[str, str] = {}
    for c in configs:
        for k, v in c.resources.items():
            resources[k] += v
        labels.update(c.node_labels)
    return RayPlacementConfig(
        num_cpus=sum(c.num_cpus for c in configs), num_gpus=sum(c.num_gpus for c in configs),
        resources=dict(resources), node_labels=labels, scheduling_strategy=configs[0].scheduling_strategy,
    )


def _describe(p: RayPlacementConfig) -> str:
    parts = [f"num_cpus={p.num_cpus:g}", f"num_gpus={p.num_gpus:g}"]
    if p.resources:
        parts.append(f"resources={p.resources}")
    if p.node_labels:
        parts.append(f"node_labels={p.node_labels}")
    return ", ".join(parts)


class RayHandle:
    """A server process (or the process of co-located servers) that an actor runs on a node."""

    def __init__(
        self, spec: ServerSpec, actor: Any, pid: int, first_line: int, node: str, out: IO[str],
        secrets: frozenset[str], label: str, node_id: str = "", supervisor_pid: int | None = None,
    ) -> None:
        import ray

        self._ray = ray
        self.spec = spec
        self.actor = actor
        self._pid = pid
        self._node = node
        #: Ray's id of the node (several nodes may share an address: ray.cluster_utils on one machine)
        self.node_id = node_id
        #: the pid of the actor's process on its node (the server's parent)
        self.supervisor_pid = supervisor_pid
        self.started_at = time.time()
        self.out = out
        self.secrets = secrets
        self.label = label
        self.tail: collections.deque[str] = collections.deque(maxlen=30)
        self._code: int | None = None
        self._exit = actor.wait.remote()
        self._pump = threading.Thread(target=self._pump_logs, args=(first_line,), name=f"log-{label}", daemon=True)
        self._pump.start()

    @property
    def pid(self) -> int | None:
        return self._pid

    @property
    def node(self) -> str | None:
        return self._node

    def _pump_logs(self, since: int) -> None:
        """Forward the server's output from its node: ``(<name>@<node>) <line>``, secrets masked."""
        prefix = f"({self.label}@{self._node}) "
        while True:
            try:
                since, lines, done = self._ray.get(self.actor.logs.remote(since, 1.0), timeout=CALL_TIMEOUT_S)
            except Exception as e:  # the actor or its node is gone: what was read is what there is
                self.tail.append(f"ngym: lost the server's log stream from node {self._node} ({type(e).__name__})")
                return
            for line in lines:
                if self.secrets:
                    line = scrub(line, set(self.secrets))
                self.tail.append(line)
                with contextlib.suppress(ValueError, OSError):
                    self.out.write(prefix + line + "\n")
                    self.out.flush()
            if done:
                return

    def returncode(self) -> int | None:
        if self._code is None:
            ready, _ = self._ray.wait([self._exit], timeout=0)
            if ready:
                self._code = self._exit_code()
        return self._code

    def _exit_code(self) -> int:
        try:
            return int(self._ray.get(self._exit))
        except Exception as e:  # RayActorError: the actor died, with its node or killed
            self.tail.append(
                f"ngym: the Ray actor running this server on node {self._node} is gone ({type(e).__name__}: "
                f"{str(e).splitlines()[0] if str(e) else ''}); its node died or the actor was killed"
            )
            return -9

    def log_tail(self) -> list[str]:
        self._pump.join(timeout=2.0)
        return list(self.tail)

    def _signal(self, signum: int) -> None:
        if self.returncode() is None:
            with contextlib.suppress(Exception):
                self.actor.signal.remote(int(signum))

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def wait(self, timeout: float) -> int | None:
        if self._code is None:
            ready, _ = self._ray.wait([self._exit], timeout=max(0.0, timeout))
            if not ready:
                return None
            self._code = self._exit_code()
        return self._code


class RayPlacement:
    """Each server process on a node of a Ray cluster (see the module's docstring)."""

    servers_here = False

    def __init__(self, deployment: Deployment, out: IO[str] | None = None) -> None:
        try:
            import ray
        except ImportError as e:
            raise DeploymentError(
                f"The config places the servers on Ray (ray / ray_head_node_address), but Ray is not installed "
                f"({e}). Install the extra: pip install -e '.[ray]' (or NGYM_RAY=1 bash scripts/setup.sh), the same "
                f"Ray version as the cluster's; or remove ray and ray_head_node_address to run the servers here."
            ) from None

        self._ray = ray
        self.out = out or sys.stdout
        self.secrets = frozenset(secret_values(OmegaConf.to_container(deployment.config, resolve=False)))
        settings = deployment.ray
        address = settings.ray_head_node_address if settings is not None else None
        #: we started the cluster (stop it at close) / we connected to one (disconnect at close)
        self.started_cluster = False
        self.connected_here = False
        self.closed = False
        if not ray.is_initialized():
            _token_auth_mode()
            with _own_signal_handlers():
                try:
                    if address:
                        ray.init(address=address, logging_level="WARNING", log_to_driver=False)
                    else:
                        # "local": a new cluster, even where one runs already (ray.init() would join that)
                        ray.init(address="local", include_dashboard=False, logging_level="WARNING", log_to_driver=False)
                        self.started_cluster = True
                except (ConnectionError, RuntimeError, ValueError) as e:
                    what = f"join the Ray cluster at {address!r}" if address else "start a local Ray cluster"
                    hint = (" `auto` joins the cluster running on this machine (started with `ray start --head`);"
                            " a remote one is <head address>:<port> (6379 by default), reachable from here, with the"
                            " cluster's auth token in ~/.ray/auth_token or RAY_AUTH_TOKEN.") if address else ""
                    key = "ray_head_node_address" if address else "ray"
                    raise DeploymentError(f"{key}: could not {what}: {type(e).__name__}: {e}.{hint}") from None
            self.connected_here = True
        self.gcs_address = str(ray.get_runtime_context().gcs_address)
        deployment.config.ray_head_node_address = self.gcs_address  # servers' own ray.init() joins it
        self.deployment = deployment
        #: the actor of each unit key (``hosted`` for the co-located group), where it landed, its bind address
        self.actors: dict[str, Any] = {}
        self.nodes: dict[str, dict[str, Any]] = {}
        self.bind: dict[str, str] = {}
        self._specs: dict[str, list[ServerSpec]] = {}
        how = "started a local Ray cluster" if self.started_cluster else (
            f"joined the Ray cluster at {self.gcs_address}" if self.connected_here else
            f"uses this process's Ray cluster ({self.gcs_address})")
        print(f"ngym: servers are placed on Ray: {how}; {len(ray.nodes())} node(s).", file=self.out, flush=True)

    # ---- placing -----------------------------------------------------------------------------

    def _actor(self, specs: list[ServerSpec], prefer_node: str | None = None) -> Any:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        p = _merged(specs)
        options: dict[str, Any] = {
            "num_cpus": p.num_cpus, "num_gpus": p.num_gpus, "max_concurrency": 8, "max_restarts": 0,
            "scheduling_strategy": NodeAffinitySchedulingStrategy(prefer_node, soft=True) if prefer_node
            else p.scheduling_strategy,
        }
        if p.resources:
            options["resources"] = p.resources
        if p.node_labels:
            options["label_selector"] = p.node_labels
        return self._ray.remote(ServerSupervisor).options(**options).remote()

    def _landed(self, key: str, specs: list[ServerSpec], answer: dict[str, Any]) -> None:
        """Write where ``key``'s process runs into its specs (and, by :meth:`_write_config`, the config)."""
        self.nodes[key] = answer
        configured = {str(self._node_of(s.name).get("host") or "") for s in specs}
        self.bind[key] = "0.0.0.0" if configured <= {"0.0.0.0", "::"} and configured else answer["ip"]
        for spec, port in zip(specs, answer["ports"], strict=True):
            spec.host = answer["ip"]
            spec.port = int(port)

    def _node_of(self, name: str) -> Any:
        spec = self.deployment.servers[name]
        return self.deployment.config[name][spec.type][spec.impl]

    def prepare(self, deployment: Deployment, units: dict[str, ServerSpec], timeout_s: float) -> None:
        hosted = [units[n] for n in deployment.colocated if n in units]
        groups: dict[str, list[ServerSpec]] = {"hosted": hosted} if hosted else {}
        groups.update((k, [u]) for k, u in units.items() if u.name not in deployment.colocated)
        self._specs = groups
        self.units = units
        self.actors = {key: self._actor(specs) for key, specs in groups.items()}
        asked = {self.actors[k].where.remote(*self._ports(specs)): k for k, specs in groups.items()}
        ready, pending = self._ray.wait(list(asked), num_returns=len(asked), timeout=timeout_s)
        if pending:
            raise DeploymentError(self._unplaceable([asked[r] for r in pending], timeout_s))
        used: set[tuple[str, int]] = set()
        for ref in sorted(ready, key=lambda r: asked[r]):
            key = asked[ref]
            try:
                answer = self._ray.get(ref)
                # two actors on one node may have been handed the same free port at once: ask again
                for _ in range(5):
                    if not used & {(answer["ip"], p) for p in answer["ports"]}:
                        break
                    wanted, pinned = self._ports(groups[key])
                    answer = self._ray.get(self.actors[key].where.remote(wanted, pinned), timeout=CALL_TIMEOUT_S)
            except Exception as e:
                raise DeploymentError(f"Ray could not start the actor for {key!r}: {type(e).__name__}: {e}") from None
            used.update((answer["ip"], p) for p in answer["ports"])
            self._landed(key, groups[key], answer)
        self._write_config()
        for key, answer in sorted(self.nodes.items()):
            print(f"ngym: {key} -> node {answer['ip']} ({answer['hostname']}, node id {answer['node_id'][:12]}), "
                  f"port(s) {', '.join(map(str, answer['ports']))}", file=self.out, flush=True)

    @staticmethod
    def _ports(specs: list[ServerSpec]) -> tuple[list[int | None], list[bool]]:
        """What each process's port must be: the config's (pinned; replica 0 only) or any."""
        pinned = [s.port_pinned and s.replica == 0 for s in specs]
        return [s.port if p else None for s, p in zip(specs, pinned, strict=True)], pinned

    def _unplaceable(self, keys: list[str], timeout_s: float) -> str:
        nodes = []
        for n in self._ray.nodes():
            if not n.get("Alive"):
                continue
            resources = {k: v for k, v in n.get("Resources", {}).items() if not k.startswith(("node:", "memory", "object_store"))}
            labels = {k: v for k, v in (n.get("Labels") or {}).items() if not k.startswith("ray.io/")}
            nodes.append(f"{n.get('NodeManagerAddress')} {resources}" + (f" labels {labels}" if labels else ""))
        wanted = "; ".join(f"{k} ({_describe(_merged(self._specs[k]))})" for k in keys)
        return (
            f"Ray placed no node for {wanted} within {timeout_s:g} s: no node of the cluster offers what they ask. "
            f"The cluster's nodes: {' | '.join(nodes) or 'none'}. Lower the request under the instance's `placement` "
            f"(num_cpus, num_gpus, resources, node_labels), or add a node that offers it "
            f"(ray start --address=... --resources='{{\"name\": 1}}' --labels=key=value)."
        )

    def _write_config(self) -> None:
        """Every instance's real address(es) into the deployment's config (what every process and
        the head server read) and its spec."""
        by_name: dict[str, list[ServerSpec]] = collections.defaultdict(list)
        for unit in self.units.values():
            by_name[unit.name].append(unit)
        for name, replicas in by_name.items():
            replicas.sort(key=lambda r: r.replica)
            node = self._node_of(name)
            spec = self.deployment.servers[name]
            spec.host, spec.port = replicas[0].host, replicas[0].port
            node.host, node.port = spec.host, spec.port
            if len(replicas) > 1:
                spec.replica_ports = [r.port for r in replicas]
                spec.replica_hosts = [r.host for r in replicas]
                node.replica_ports = list(spec.replica_ports)
                node.replica_hosts = list(spec.replica_hosts)
        taken = sorted({self.deployment.head.port, *(u.port for u in self.units.values())})
        self.deployment.config.disallowed_ports = taken

    # ---- starting ----------------------------------------------------------------------------

    def _env(self, key: str, env: dict[str, str], port: int | None) -> tuple[dict[str, str], list[str]]:
        """What the server's environment adds to its node's (the one of ``ray start``): ngym's
        settings and whatever the launcher changed; and the variables it removes."""
        delta = {k: v for k, v in env.items() if k.startswith(("NGYM_", "NEMO_GYM_", "PYTHON")) or os.environ.get(k) != v}
        delta[HOST_ENV] = self.bind[key]
        if port is not None:
            delta[PORT_ENV] = str(port)
        delta["RAY_ADDRESS"] = self.gcs_address  # a server's own ray.init() joins this cluster
        unset = [k for k in os.environ if k not in env]
        return delta, unset

    def _start(self, key: str, argv: list[str], cwd: Path, env: dict[str, str], own_port: bool) -> tuple[Any, int, int]:
        """Start the process of ``key`` through its actor, placing a new actor first if it is gone
        (``own_port``: the process is told its port, NGYM_PORT; a host of several reads theirs)."""
        for attempt in (1, 2):
            actor = self.actors[key]
            delta, unset = self._env(key, env, self._specs[key][0].port if own_port else None)
            try:
                pid, first = self._ray.get(actor.start.remote(argv, str(cwd), delta, unset), timeout=CALL_TIMEOUT_S)
                return actor, int(pid), int(first)
            except Exception as e:
                if attempt == 2 or self.closed:
                    raise DeploymentError(f"Could not start {key!r} on Ray: {type(e).__name__}: {e}") from None
                self._replace(key, e)
        raise AssertionError("unreachable")

    def _alive_nodes(self) -> set[str]:
        with contextlib.suppress(Exception):
            return {str(n["NodeID"]) for n in self._ray.nodes() if n.get("Alive")}
        return set()

    def _replace(self, key: str, why: Exception, tries: int = 4) -> None:
        """A new actor for ``key`` (its old one, or its node, is gone), on the same node while that
        one is alive; the new address goes into the config the head server serves. A node that died
        may still count as alive for a few seconds (Ray's health checks): an actor placed there dies
        too, and the next try goes elsewhere."""
        specs = self._specs[key]
        old = self.nodes.get(key, {})
        print(f"ngym: the Ray actor of {key!r} on node {old.get('ip')} is gone ({type(why).__name__}); placing it again.",
              file=self.out, flush=True)
        for attempt in range(1, tries + 1):
            with contextlib.suppress(Exception):
                self._ray.kill(self.actors[key], no_restart=True)
            same = attempt == 1 and old.get("node_id") in self._alive_nodes()
            self.actors[key] = self._actor(specs, prefer_node=old.get("node_id") if same else None)
            try:
                answer = self._ray.get(self.actors[key].where.remote([s.port for s in specs], [False] * len(specs)),
                                       timeout=CALL_TIMEOUT_S)
                break
            except Exception as e:
                if attempt == tries:
                    raise
                print(f"ngym: placing {key!r} again failed ({type(e).__name__}: {str(e).splitlines()[0]}); "
                      f"trying again ({attempt + 1} of {tries}).", file=self.out, flush=True)
                time.sleep(min(10.0, 2.0 * attempt))
        self._landed(key, specs, answer)
        self._write_config()
        print(f"ngym: {key!r} now runs on node {answer['ip']}, port(s) {', '.join(map(str, answer['ports']))}.",
              file=self.out, flush=True)

    def start(self, spec: ServerSpec, env: dict[str, str]) -> Handle:
        argv, cwd, full = server_command(spec, env)
        actor, pid, first = self._start(spec.key, argv, cwd, full, True)
        return RayHandle(spec, actor, pid, first, spec.host, self.out, self.secrets, spec.key,
                         self.nodes[spec.key]["node_id"], self.nodes[spec.key]["actor_pid"])

    def start_group(self, specs: list[ServerSpec], env: dict[str, str]) -> dict[str, Handle]:
        argv, cwd, full = group_command(specs, env)
        actor, pid, first = self._start("hosted", argv, cwd, full, False)
        label = f"hosted: {','.join(s.name for s in specs)}"
        host = RayHandle(specs[0], actor, pid, first, specs[0].host, self.out, self.secrets, label,
                         self.nodes["hosted"]["node_id"], self.nodes["hosted"]["actor_pid"])
        return {spec.name: SharedHandle(spec, host) for spec in specs}

    # ---- stopping ----------------------------------------------------------------------------

    def close(self) -> None:
        """Kill every actor (their servers die with them); stop the cluster if we started it,
        disconnect if we connected; a caller's own Ray connection stays."""
        if self.closed:
            return
        self.closed = True
        for actor in self.actors.values():
            with contextlib.suppress(Exception):
                self._ray.kill(actor, no_restart=True)
        if self.connected_here and self._ray.is_initialized():
            with contextlib.suppress(Exception):
                self._ray.shutdown()
        if self.started_cluster:
            print("ngym: stopped the local Ray cluster.", file=self.out, flush=True)

