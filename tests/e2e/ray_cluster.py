"""A real multi-node Ray cluster on one machine, for the Ray placement tests.

Preferred: every node has **its own address**. As root, :func:`netns_cluster` makes a bridge with
an address on this machine (the head node's), and one network namespace per worker node joined to
the bridge by a veth pair, each with its own address; the head node runs here (``ray start --head
--node-ip-address=<bridge address>``) and each worker node runs inside its namespace (``ip netns
exec <ns> ray start --address=<head> --node-ip-address=<its address>``), with the custom resources
and labels the tests place servers by. Servers placed on a worker node bind to that node's address,
which exists only inside its namespace: a server that answers there really runs on that node.

Where namespaces cannot be made (not root, no ``ip``), :func:`local_cluster` falls back to
``ray start`` nodes that all share 127.0.0.1 (nodes are told apart by Ray's node id, not by address).

Every node's processes are one process group (``ray start`` in a new session): stopping a node
kills that group, never anything by name (``ray stop`` would stop every Ray cluster of the machine).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.e2e.conftest import BIN, free_port

#: the worker nodes: name -> (custom resources, labels, GPUs declared)
#: (as docs/scale-out.md's ``ray start`` blocks start them: a CPU node with sandboxes, a GPU node)
WORKERS: dict[str, tuple[dict[str, float], dict[str, str], int]] = {
    "node1": ({"sandbox": 100.0}, {"zone": "a"}, 0),
    "node2": ({}, {"zone": "b"}, 2),
}


def ray_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["RAY_AUTH_MODE"] = "token"  # every node and client sends the cluster's token (~/.ray/auth_token)
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    for key in ("RAY_ADDRESS", "NEMO_GYM_CONFIG_DICT"):
        env.pop(key, None)
    return env


@dataclass
class Cluster:
    """A running cluster: its head's address, each node's address, how it was made."""

    head: str
    nodes: dict[str, str]  # "head", "node1", "node2" -> the node's address
    netns: bool
    groups: list[int] = field(default_factory=list)  # one process group per node
    namespaces: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)

    def stop(self) -> None:
        for pgid in reversed(self.groups):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGTERM)
        deadline = time.monotonic() + 3  # zombies of a dead node keep its group until reaped
        while time.monotonic() < deadline and any(_group_alive(g) for g in self.groups):
            time.sleep(0.2)
        for pgid in self.groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        for ns in self.namespaces:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        for link in self.links:
            subprocess.run(["ip", "link", "del", link], capture_output=True)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _ray_start(args: list[str], netns: str | None, log: Path) -> int:
    """``ray start ...`` (in ``netns``), in a new session; returns its process group."""
    prefix = ["ip", "netns", "exec", netns] if netns else []
    with log.open("ab") as out:
        proc = subprocess.Popen([*prefix, str(BIN / "ray"), "start", *args], env=ray_env(), stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        code = proc.wait(180)
    if code != 0:
        raise RuntimeError(f"ray start {' '.join(args)} failed ({code}):\n{log.read_text()[-3000:]}")
    return proc.pid


def _worker_args(name: str, head: str, ip: str) -> list[str]:
    resources, labels, gpus = WORKERS[name]
    return [f"--address={head}", f"--node-ip-address={ip}", f"--num-gpus={gpus}",
            f"--resources={json.dumps(resources)}", f"--labels={','.join(f'{k}={v}' for k, v in labels.items())}",
            "--disable-usage-stats"]


def _head_args(ip: str, port: int) -> list[str]:
    return ["--head", f"--node-ip-address={ip}", f"--port={port}",
            '--resources={"head": 100}', "--include-dashboard=false", "--disable-usage-stats"]


def netns_possible() -> bool:
    """Whether this process can make network namespaces (root, ``ip``); NGYM_RAY_TEST_NETNS=0 forces
    the fallback (to test it)."""
    if os.environ.get("NGYM_RAY_TEST_NETNS") == "0" or os.geteuid() != 0 or shutil.which("ip") is None:
        return False
    probe = f"ngymprobe{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True).returncode == 0
    if made:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return made


def _sh(*args: str) -> None:
    done = subprocess.run(list(args), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {done.stderr.strip()}")


#: starts the nodes of a cluster whose network is made: (cluster, head port, logs, namespace of each worker) -> groups
Starter = Callable[[Cluster, int, Path, dict[str, str]], list[int]]


def make_token() -> None:
    """The cluster's auth token in ~/.ray/auth_token, made if missing (as docs/scale-out.md does)."""
    subprocess.run([str(BIN / "ray"), "get-auth-token", "--generate"], env=ray_env(), stdout=subprocess.DEVNULL,
                   check=True, timeout=120)


def start_nodes(cluster: Cluster, port: int, logs: Path, namespaces: dict[str, str]) -> list[int]:
    make_token()
    groups = [_ray_start(_head_args(cluster.nodes["head"], port), None, logs / "head.log")]
    for name in WORKERS:
        groups.append(_ray_start(_worker_args(name, cluster.head, cluster.nodes[name]), namespaces[name], logs / f"{name}.log"))
    return groups


@contextlib.contextmanager
def netns_cluster(logs: Path, start: Starter = start_nodes) -> Iterator[Cluster]:
    """Head node here on a bridge address, each worker node in its own network namespace."""
    tag = os.getpid() % 100000
    subnet = f"198.18.{tag % 250}"  # the benchmarking range (RFC 2544): on no real network
    bridge = f"ngbr{tag}"
    cluster = Cluster(head="", nodes={"head": f"{subnet}.1"}, netns=True, links=[bridge])
    try:
        _sh("ip", "link", "add", bridge, "type", "bridge")
        _sh("ip", "addr", "add", f"{subnet}.1/24", "dev", bridge)
        _sh("ip", "link", "set", bridge, "up")
        for k, name in enumerate(WORKERS, start=1):
            ns, veth = f"ngym{tag}-{name}", f"ngv{tag}{k}"
            ip = f"{subnet}.{10 + k}"
            _sh("ip", "netns", "add", ns)
            cluster.namespaces.append(ns)
            _sh("ip", "link", "add", veth, "type", "veth", "peer", "name", f"{veth}p")
            cluster.links.append(veth)
            _sh("ip", "link", "set", f"{veth}p", "netns", ns)
            _sh("ip", "link", "set", veth, "master", bridge)
            _sh("ip", "link", "set", veth, "up")
            _sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"{ip}/24", "dev", f"{veth}p")
            _sh("ip", "netns", "exec", ns, "ip", "link", "set", f"{veth}p", "up")
            _sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
            cluster.nodes[name] = ip
        port = free_port()
        cluster.head = f"{subnet}.1:{port}"
        cluster.groups.extend(start(cluster, port, logs, {name: f"ngym{tag}-{name}" for name in WORKERS}))
        yield cluster
    finally:
        cluster.stop()


@contextlib.contextmanager
def local_cluster(logs: Path) -> Iterator[Cluster]:
    """The fallback: ``ray.cluster_utils.Cluster``, every node on this machine's one address
    (nodes told apart by Ray's node id; the custom resources and labels are the same)."""
    os.environ.update({k: v for k, v in ray_env().items() if k.startswith("RAY_")})
    make_token()
    import ray._raylet
    from ray.cluster_utils import Cluster as RayTestCluster

    ray._raylet.Config.initialize("")  # Ray read RAY_AUTH_MODE when it was imported: read it again

    made = RayTestCluster(initialize_head=True, head_node_args={
        "num_cpus": 2, "num_gpus": 0, "resources": {"head": 100.0}, "include_dashboard": False})
    try:
        ip = made.head_node.node_ip_address
        cluster = Cluster(head=made.address, nodes={"head": ip}, netns=False)
        for name, (resources, labels, gpus) in WORKERS.items():
            made.add_node(num_cpus=2, num_gpus=gpus, resources=resources, labels=labels)
            cluster.nodes[name] = ip
        made.wait_for_nodes()
        yield cluster
    finally:
        made.shutdown()
