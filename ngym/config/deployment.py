"""From a merged config to a deployment: which server instances exist, where they listen, and
whether their references to each other hold.

A server instance is a top-level key (not reserved) shaped ``name: {type: {impl: {entrypoint: ...}}}``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import difflib
import random
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from pydantic import ValidationError

from ngym.config.instance import InstanceShapeError, ServerInstance, read_instance
from ngym.config.paths import PARENT_DIR
from ngym.config.schema import RESERVED_KEYS, SERVER_TYPES, HeadServerConfig, RayClusterConfig, ServerConfig
from ngym.errors import AlmostServerError, ConfigError, PortError, ServerRefError, ServerTypeError

KIND_NAMES = {
    "resources_servers": "resources",
    "responses_api_agents": "agent",
    "responses_api_models": "model",
}


@dataclass(slots=True)
class ServerSpec:
    """One server instance to run."""

    name: str
    type: str
    impl: str
    entrypoint: str
    host: str
    port: int
    dir: Path
    source: str | None = None
    #: which replica this is (0 for an instance of one process)
    replica: int = 0
    #: every replica's port (``num_replicas`` > 1), [0] being ``port``; empty: one process
    replica_ports: list[int] = field(default_factory=list)
    #: every replica's host when they differ (Ray placement), [0] being ``host``; empty: all on ``host``
    replica_hosts: list[str] = field(default_factory=list)
    #: ``placement`` of the config (Ray: resources and node constraints per replica), validated
    placement: dict[str, Any] | None = None
    #: the config sets ``port`` (else ng_run picked it; on Ray each node picks its own)
    port_pinned: bool = False

    @property
    def kind(self) -> str:
        return KIND_NAMES[self.type]

    @property
    def key(self) -> str:
        """The process's name in the launcher: ``name``, or ``name#<replica>`` for replicas after the first."""
        return self.name if self.replica == 0 else f"{self.name}#{self.replica}"

    def replicas(self) -> list[ServerSpec]:
        """One spec per process serving this instance (itself alone unless ``num_replicas`` > 1)."""
        if len(self.replica_ports) <= 1:
            return [self]
        hosts = self.replica_hosts or [self.host] * len(self.replica_ports)
        return [dataclasses.replace(self, host=h, port=p, replica=i)
                for i, (h, p) in enumerate(zip(hosts, self.replica_ports, strict=True))]

    @property
    def replica_urls(self) -> list[str]:
        return [r.url for r in self.replicas()]

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.port}"


@dataclass(slots=True)
class Deployment:
    """The resolved deployment: the config every server sees, and its server instances."""

    config: DictConfig
    servers: dict[str, ServerSpec] = field(default_factory=dict)
    head: HeadServerConfig = field(default_factory=HeadServerConfig)
    #: instances hosted together in one process (``colocate:`` in the config), in config order
    colocated: list[str] = field(default_factory=list)
    #: the servers run on a Ray cluster (``ray: true`` / ``ray_head_node_address``); None: on this machine
    ray: RayClusterConfig | None = None

    def of_type(self, server_type: str) -> list[ServerSpec]:
        return [s for s in self.servers.values() if s.type == server_type]

    def agents(self) -> list[ServerSpec]:
        return self.of_type("responses_api_agents")

    def to_yaml(self) -> str:
        return OmegaConf.to_yaml(self.config)


def _plain(node: Any) -> Any:
    if isinstance(node, DictConfig):
        return OmegaConf.to_container(node, resolve=False)
    return node


def _looks_like_server(value: Any) -> bool:
    """``{something: {impl: {entrypoint: ...}}}``: the shape of an instance, whatever the type key."""
    if not isinstance(value, dict) or len(value) != 1:
        return False
    (inner,) = value.values()
    return isinstance(inner, dict) and any(isinstance(v, dict) and "entrypoint" in v for v in inner.values())


def _where(name: str, sources: dict[str, str]) -> str:
    return f" (defined in {sources[name]})" if name in sources else ""


def _find_instances(cfg: DictConfig, sources: dict[str, str]) -> tuple[dict[str, ServerInstance], list[str]]:
    found: dict[str, ServerInstance] = {}
    problems: list[str] = []
    for key in cfg:
        name = str(key)
        if name in RESERVED_KEYS or name.startswith("_"):
            continue
        value = _plain(cfg._get_node(name))
        if not isinstance(value, dict):
            continue
        try:
            instance = read_instance(name, value, _where(name, sources))
        except InstanceShapeError as e:
            problems.append(str(e))
            continue
        if instance is None:
            if _looks_like_server(value):
                (bad,) = value.keys()
                close = difflib.get_close_matches(str(bad), SERVER_TYPES, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ServerTypeError(
                    f"Instance {name!r}{_where(name, sources)} has server type {bad!r}, which does not exist.{hint} "
                    f"Server types: {', '.join(SERVER_TYPES)}."
                )
            continue
        found[name] = instance
    return found, problems


def _check_instance(instance: ServerInstance) -> list[str]:
    name, server_type, impl, body = instance.name, instance.server_type, instance.impl, instance.settings
    errors: list[str] = []
    try:
        ServerConfig.model_validate({**body, "name": name})
    except ValidationError as e:
        for err in e.errors():
            loc = " -> ".join(str(p) for p in (name, server_type, impl, *err["loc"]))
            errors.append(f"{loc}: {err['msg']}")
    if server_type == "resources_servers" and not body.get("domain"):
        errors.append(
            f"{name} -> {server_type} -> {impl} -> domain: resources servers need a domain "
            f"(one of math, coding, agent, knowledge, instruction_following, long_context, safety, games, "
            f"translation, e2e, rlhf, other)"
        )
    return errors


def _check_refs(found: dict[str, ServerInstance], sources: dict[str, str]) -> None:
    for name, instance in found.items():
        server_type, impl = instance.server_type, instance.impl
        for key, value in instance.settings.items():
            if not (isinstance(value, dict) and set(value) == {"type", "name"}):
                continue
            ref_type, ref_name = value["type"], value["name"]
            target = found.get(ref_name)
            if target is not None and target.server_type == ref_type:
                continue
            same_type = sorted(n for n, i in found.items() if i.server_type == ref_type)
            close = difflib.get_close_matches(str(ref_name), same_type, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            if ref_type not in SERVER_TYPES:
                detail = f"type {ref_type!r} is not a server type ({', '.join(SERVER_TYPES)})"
            elif target is not None:
                detail = f"{ref_name!r} is a {target.server_type} instance, not {ref_type}"
            else:
                detail = f"no {ref_type} instance is named {ref_name!r}"
            raise ServerRefError(
                f"{name}{_where(name, sources)} -> {server_type} -> {impl} -> {key}: {detail}.{hint} "
                f"{ref_type} instances in this config: {same_type or 'none'}. "
                f"Add the config file that defines it to config_paths, or fix the name."
            )


def ray_cluster_config(cfg: DictConfig) -> RayClusterConfig | None:
    """The config's ``ray`` / ``ray_head_node_address``, validated; None unless servers go on Ray."""
    values = {k: _plain(cfg.get(k)) for k in ("ray", "ray_head_node_address") if cfg.get(k) is not None}
    try:
        ray = RayClusterConfig.model_validate(values)
    except ValidationError as e:
        first = e.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise ConfigError(
            f"{key}={first.get('input')!r}: {first['msg']}. Examples: +ray=true (a local Ray cluster), "
            f"+ray_head_node_address=auto (the cluster running on this machine), +ray_head_node_address=10.0.0.5:6379."
        ) from None
    return ray if ray.wanted else None


def head_server_config(cfg: DictConfig, default_host: str = "127.0.0.1") -> HeadServerConfig:
    """``head_server`` of the config, validated (a bad or out-of-range port is a :class:`PortError`)."""
    given = cfg.get("head_server")
    values = OmegaConf.to_container(given, resolve=True) if isinstance(given, DictConfig) else {}
    try:
        head = HeadServerConfig.model_validate({"host": default_host, **values})  # type: ignore[dict-item]
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise PortError(f"head_server.{where}={first.get('input')!r}: {first['msg']}. Example: +head_server.port=11000.") from None
    check_port("head_server", head.port)
    return head


def _port_is_free(host: str, port: int) -> bool:
    """Whether a server could listen on ``port``. Connections of a stopped server left in
    TIME-WAIT do not count: servers bind with SO_REUSEADDR (uvicorn does), and so does this check."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host if host not in ("", "localhost") else "127.0.0.1", port))
        except OSError:
            return False
    return True


def check_port(name: str, port: int) -> None:
    if not 0 <= port <= 65535:
        raise PortError(f"Port {port} for {name!r} is out of range: ports are 1-65535 (0: pick a free one).")


def pick_free_port(host: str, low: int, high: int, taken: set[int], rng: random.Random | None = None) -> int:
    rng = rng or random.SystemRandom()
    assert rng is not None
    for _ in range(200):
        port = rng.randint(low, high)
        if port not in taken and _port_is_free(host, port):
            return port
    raise PortError(
        f"Found no free port in {low}-{high} after 200 tries. Set port_range_low/port_range_high to a freer range."
    )


def _server_dir(server_type: str, impl: str, entrypoint: str) -> Path:
    here = Path.cwd() / server_type / impl
    if (here / entrypoint).is_file():
        return here
    return PARENT_DIR / server_type / impl


def build_deployment(
    cfg: DictConfig, sources: dict[str, str] | None = None, *, assign_ports: bool = True
) -> Deployment:
    """Validate every server instance and reference, fill hosts and ports into ``cfg``."""
    sources = sources or {}
    found, problems = _find_instances(cfg, sources)
    for instance in found.values():
        problems.extend(_check_instance(instance))
    if problems and bool(cfg.get("error_on_almost_servers", True)):
        raise AlmostServerError(
            "Found server instance(s) with errors; nothing was started:\n  - "
            + "\n  - ".join(problems)
            + "\nFix the config (or set +error_on_almost_servers=false to skip these instances)."
        )
    bad = {p.split(" ")[0].split(":")[0] for p in problems}
    found = {n: v for n, v in found.items() if n not in bad}
    _check_refs(found, sources)

    default_host = str(cfg.get("default_host") or "127.0.0.1")
    head = head_server_config(cfg, default_host)
    low, high = int(cfg.get("port_range_low", 10001)), int(cfg.get("port_range_high", 20000))
    check_port("head_server", head.port)
    if head.port == 0 and assign_ports:
        head.port = pick_free_port(head.host, low, high, set())
    cfg.head_server = {"host": head.host, "port": head.port}
    taken: Taken = {(_machine(head.host), head.port): "head_server"}
    deployment = Deployment(config=cfg, head=head, ray=ray_cluster_config(cfg))
    for name, instance in found.items():
        server_type, impl = instance.server_type, instance.impl
        node = cfg[name][server_type][impl]
        host = str(node.get("host") or default_host)
        port = int(node.get("port") or 0)
        pinned = port != 0
        check_port(name, port)
        if port:
            if (_machine(host), port) in taken:
                raise PortError(
                    f"Port {port} is set for both {taken[_machine(host), port]!r} and {name!r}{_where(name, sources)}. "
                    f"Give each instance its own port, or remove 'port' to have one assigned."
                )
        elif assign_ports:
            port = pick_free_port(host, low, high, {p for _, p in taken})
        taken[_machine(host), port] = name
        node.host = host
        node.port = port
        count = int(node.get("num_replicas") or 1)  # checked >= 1 by ServerConfig
        replica_hosts = [str(h) for h in (node.get("replica_hosts") or [])]
        if replica_hosts and (len(replica_hosts) != count or replica_hosts[0] != host):
            raise ConfigError(
                f"{name}: replica_hosts {replica_hosts} does not match num_replicas={count} and "
                f"host={host!r} (it lists every replica's host, the first being host; ng_run fills it in on Ray). "
                f"Remove replica_hosts."
            )
        replica_ports = _replica_ports(name, node, port, replica_hosts or [host] * count, taken, low, high, assign_ports)
        placement = _plain(node.get("placement"))
        entrypoint = instance.entrypoint
        deployment.servers[name] = ServerSpec(
            name=name,
            type=server_type,
            impl=impl,
            entrypoint=entrypoint,
            host=host,
            port=port,
            dir=_server_dir(server_type, impl, entrypoint),
            source=sources.get(name),
            replica_ports=replica_ports,
            replica_hosts=replica_hosts if len(replica_ports) > 1 else [],
            placement=placement if isinstance(placement, dict) else None,
            port_pinned=pinned,
        )
    cfg.disallowed_ports = sorted({p for _, p in taken})
    deployment.colocated = _colocated(cfg.get("colocate"), list(deployment.servers))
    replicated = [n for n in deployment.colocated if len(deployment.servers[n].replica_ports) > 1]
    if replicated:
        raise ConfigError(
            f"{replicated} set num_replicas > 1 and are co-located (colocate); a co-located server is one of "
            f"several in one process. Leave them out of colocate, or set num_replicas: 1."
        )
    return deployment


#: the ports in use, by machine (see :func:`_machine`) and port: what holds each
Taken = dict[tuple[str, int], str]


def _machine(host: str) -> str:
    """Which machine an address is on, for port clashes: this one for loopback and any-address
    binds, else the address itself (Ray places servers on other nodes, where a port may repeat)."""
    if host in ("", "0.0.0.0", "::", "localhost"):
        return "local"
    try:
        return "local" if ipaddress.ip_address(host.strip("[]")).is_loopback else host
    except ValueError:
        return host


def _replica_ports(
    name: str, node: Any, port: int, hosts: list[str], taken: Taken, low: int, high: int, assign: bool
) -> list[int]:
    """Every replica's port ([0] is ``port``), written back to the config as ``replica_ports`` so
    every process of the deployment (and its clients) knows them; [] for one process. ``hosts``:
    each replica's host."""
    count = len(hosts)
    if count == 1:
        return []
    given = [int(p) for p in (node.get("replica_ports") or [])]
    if given and (len(given) != count or given[0] != port):
        raise ConfigError(
            f"{name}: replica_ports {given} does not match num_replicas={count} and port={port} "
            f"(it lists every replica's port, the first being port). Remove replica_ports to have them assigned."
        )
    ports = given or [port]
    for i in range(len(ports), count):
        ports.append(pick_free_port(hosts[i], low, high, {p for _, p in taken}) if assign else 0)
    for i, p in enumerate(ports[1:], start=1):
        where = (_machine(hosts[i]), p)
        if p and taken.get(where, f"{name}#{i}") != f"{name}#{i}":
            raise PortError(f"Port {p} for replica {i} of {name!r} is also set for {taken[where]!r}. Give each its own port.")
        taken[where] = f"{name}#{i}"
    node.replica_ports = ports
    return ports


def _colocated(value: Any, names: list[str]) -> list[str]:
    """``colocate: true`` hosts every instance in one process; a list names the ones to host."""
    value = _plain(value)
    if value is None or value is False:
        return []
    if value is True:
        return names
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(
            f"colocate: expected true, false or a list of instance names, got {value!r}. "
            f"Example: +colocate=true or \"+colocate=[{', '.join(names[:2])}]\"."
        )
    unknown = [v for v in value if v not in names]
    if unknown:
        raise ConfigError(f"colocate names {unknown}, which are not server instances. Instances: {names}.")
    return [n for n in names if n in value]


def check_ports_free(deployment: Deployment, servers: bool = True) -> None:
    """Fail before anything starts if a port the deployment needs is out of range or already taken
    (``servers=False``: the head server's only, the servers run on other machines)."""
    wanted = [("head_server", deployment.head.host, deployment.head.port)]
    if servers:
        wanted += [(r.key, r.host, r.port) for s in deployment.servers.values() for r in s.replicas()]
    for name, host, port in wanted:
        check_port(name, port)
        if not _port_is_free(host, port):
            raise PortError(
                f"Port {port} for {name!r} is already in use (is another ng_run running? `ng_status` shows it). "
                f"Stop that process, or choose another port: +head_server.port=... / a different 'port' in the config."
            )
