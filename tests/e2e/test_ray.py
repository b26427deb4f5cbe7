"""Servers placed on a real Ray cluster (docs/scale-out.md, "Many machines").

One cluster for the module: the head node and two worker nodes, each with **its own address** in
its own network namespace (made by the test as root, tests/e2e/ray_cluster.py), started by the
docs' own ``ray start`` blocks; where namespaces cannot be made, ``ray.cluster_utils.Cluster``
nodes that share one address (placement is then checked by Ray's node id). One ``ng_run`` (the
docs' command, the docs' ``placement``) serves the tests in order: placement as configured, the
seed scenario through replicas, ``kill -9`` of a replica on a worker node mid-collection, Ctrl-C.
Then ``ray: true`` (a local cluster ng_run starts and stops) and the trainer snippet.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ngym.rollout import collect as collect_module
from tests.e2e.conftest import REPO, alive, command_env, free_port
from tests.e2e.procs import read_jsonl
from tests.e2e.ray_cluster import Cluster, local_cluster, netns_cluster, netns_possible, ray_env

pytest.importorskip("ray")
pytestmark = pytest.mark.slow

DOC = REPO / "docs" / "scale-out.md"
SINGLE, MULTI = "example_single_tool_call", "example_multi_step_resources_server"
COUNTER = "example_session_state_mgmt_resources_server"


def doc_block(name: str) -> str:
    """The docs' fenced block tagged ``name`` (```bash ray-head)."""
    (body,) = re.findall(rf"```\w+ {re.escape(name)}\n(.*?)```", DOC.read_text(), flags=re.S)
    return body


def run_block(name: str, env: dict[str, str], cwd: Path, port: int, netns: str | None = None) -> int:
    """Run a docs block as it is (``6379`` -> a free port): in a new session, so its daemons are one
    process group; returns that group."""
    script = doc_block(name).replace("6379", str(port))
    prefix = ["ip", "netns", "exec", netns] if netns else []
    log = cwd / f"{name}.log"
    with log.open("ab") as out:
        proc = subprocess.Popen([*prefix, "bash", "-euo", "pipefail", "-c", script], cwd=cwd, env={**ray_env(), **env},
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        assert proc.wait(240) == 0, f"{name} failed:\n{log.read_text()[-3000:]}"
    return proc.pid


@pytest.fixture(scope="module", autouse=True)
def fresh_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A home directory of its own for the module, as on a fresh machine: no Ray token yet (the
    docs' blocks make it), no token files of other deployments."""
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOME", str(home))
        patch.delenv("RAY_AUTH_TOKEN", raising=False)
        patch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
        yield home


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, fresh_home: Path) -> Iterator[Cluster]:
    logs = tmp_path_factory.mktemp("ray_logs")
    if not netns_possible():
        with local_cluster(logs) as made:  # fallback: nodes share one address (see the module docstring)
            yield made
        return
    with netns_cluster(logs, start=run_docs_blocks) as made:
        yield made


def run_docs_blocks(cluster: Cluster, port: int, logs: Path, namespaces: dict[str, str]) -> list[int]:
    """The docs' ``ray start`` blocks: the head here, the CPU node and the GPU node in their namespaces."""
    head_ip = cluster.nodes["head"]
    groups = [run_block("ray-head", {"HEAD_IP": head_ip}, logs, port)]
    for name, block in (("node1", "ray-node-cpu"), ("node2", "ray-node-gpu")):
        groups.append(run_block(block, {"HEAD_IP": head_ip, "NODE_IP": cluster.nodes[name]}, logs, port, namespaces[name]))
    return groups


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ray_work")
    for name in ("resources_servers", "responses_api_models"):
        (root / name).symlink_to(REPO / name)
    (root / "results").mkdir()
    (root / "env.yaml").write_text("")
    (root / "placement.yaml").write_text(doc_block("ray-placement"))
    return root


class Deployment:
    def __init__(self, proc: subprocess.Popen[str], head: str) -> None:
        self.proc, self.head = proc, head
        self.lines: list[str] = []

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def instances(self) -> list[dict]:
        return httpx.get(self.head + "/server_instances", timeout=10).json()


@pytest.fixture(scope="module")
def deployment(cluster: Cluster, workdir: Path) -> Iterator[Deployment]:
    """The docs' ng_run command against the cluster (the scripted model a little slow, so that a
    collection lasts long enough to kill a replica in the middle)."""
    import threading

    port = free_port()
    command = doc_block("ray-ng-run").strip().replace("$HEAD_IP:6379", cluster.head)
    command += f" +head_server.port={port} ++policy_model.responses_api_models.scripted_model.delay_s=0.02"
    proc = subprocess.Popen(["bash", "-c", "exec " + command], cwd=workdir, env={**command_env(), **ray_env()},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    run = Deployment(proc, f"http://127.0.0.1:{port}")
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            run.lines.append(line)
            if "servers ready" in line:
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + 240
    while not ready.wait(0.5):
        assert proc.poll() is None and time.monotonic() < deadline, "ng_run did not start:\n" + run.output
    try:
        yield run
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)


def by_name(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in sorted(rows, key=lambda r: r["replica"]):
        out.setdefault(row["name"], []).append(row)
    return out


def node_ids(cluster: Cluster) -> dict[str, str]:
    """Ray's node id of each node of the cluster, by name (what /server_instances reports)."""
    script = (
        "import json, ray; ray.init(address=%r, logging_level='ERROR');"
        "print(json.dumps([[n['NodeID'], n['Resources'], n.get('Labels') or {}] for n in ray.nodes() if n['Alive']]))"
    ) % cluster.head
    done = subprocess.run([sys.executable, "-c", script], env=ray_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    found = {}
    for node_id, resources, _ in json.loads(done.stdout.strip().splitlines()[-1]):
        if "head" in resources:
            found["head"] = node_id
        elif "sandbox" in resources:
            found["node1"] = node_id
        elif resources.get("GPU"):
            found["node2"] = node_id
    return found


def test_each_replica_runs_on_the_node_its_placement_names(cluster: Cluster, deployment: Deployment) -> None:
    ids = node_ids(cluster)
    assert len(ids) == 3, ids
    rows = by_name(deployment.instances())
    where = {name: [ids_key for r in replicas for ids_key, i in ids.items() if i == r["node_id"]] for name, replicas in rows.items()}
    assert where["policy_model"] == ["head"]  # resources: {head: 1}
    assert where[SINGLE] == ["node1", "node1"]  # node_labels: {zone: a}
    assert where[MULTI] == ["node2", "node2"]  # num_gpus: 1 each: only node2 has GPUs
    assert where["example_multi_step_simple_agent"] == ["node1"]  # resources: {sandbox: 1}
    assert len(rows[COUNTER]) == 3
    for name, replicas in rows.items():
        for r in replicas:
            node = cluster.nodes[where[name][r["replica"]]]
            assert r["node"] == node and r["url"].startswith(f"http://{node}:"), r  # bound to its node's address
            assert r["status"] == "running" and r["supervisor_pid"] and r["pid"]
            # reachable there, and only with the deployment's token (off loopback)
            assert httpx.get(r["url"] + "/", timeout=5).status_code == 401
    if cluster.netns:  # a worker node's address exists only inside its namespace: the server runs there
        assert {cluster.nodes["node1"], cluster.nodes["node2"]} <= {r["node"] for rs in rows.values() for r in rs}
        assert cluster.nodes["node1"] != cluster.nodes["node2"] != cluster.nodes["head"]
    # the head server's config holds the real addresses (what every client reads)
    config = httpx.get(deployment.head + "/global_config_dict_yaml", timeout=10).text
    for r in rows[SINGLE]:
        assert r["url"].split("//")[1].split(":")[0] in config
    assert "replica_hosts" in config
    assert "example_single_tool_call#1 -> node" in deployment.output


def seed_input(workdir: Path) -> Path:
    rows = []
    for env, agent in (("example_single_tool_call", "example_single_tool_call_simple_agent"),
                       ("example_multi_step", "example_multi_step_simple_agent")):
        for line in (workdir / f"resources_servers/{env}/data/example.jsonl").read_text().splitlines():
            rows.append(json.loads(line) | {"agent_ref": {"name": agent}})
    path = workdir / "results/seed.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def collect(workdir: Path, head: str, inp: str, out: str, *extra: str) -> subprocess.Popen[str]:
    port = head.rsplit(":", 1)[1]
    return subprocess.Popen(
        ["ng_collect_rollouts", f"+head_server.port={port}", f"+input_jsonl_fpath={inp}", f"+output_jsonl_fpath={out}",
         "+no_progress=true", *extra],
        cwd=workdir, env=command_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_the_seed_scenario_through_replicas_on_ray(workdir: Path, deployment: Deployment) -> None:
    inputs = read_jsonl(seed_input(workdir))
    proc = collect(workdir, deployment.head, "results/seed.jsonl", "results/seed_out.jsonl", "+num_repeats=4")
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stdout + stderr
    out = read_jsonl(workdir / "results/seed_out.jsonl")
    keys = sorted((o["_ng_task_index"], o["_ng_rollout_index"]) for o in out)
    assert keys == [(t, r) for t in range(len(inputs)) for r in range(4)]
    for o in out:
        row = inputs[o["_ng_task_index"]]
        assert o["agent_ref"]["name"] == row["agent_ref"]["name"] and o["reward"] == 1.0
        if row["agent_ref"]["name"] == "example_multi_step_simple_agent":
            assert o["parsed_synonym_values"] == [711, 407]


def test_1000_concurrent_episodes_over_replicas_on_three_nodes_stay_isolated(cluster: Cluster, deployment: Deployment) -> None:
    """The stateful counter's 3 replicas, spread over the nodes: 1,000 episodes at once straight
    through the client (seed, two increments, read back); each sees only its own state, and each
    replica served its share."""
    import asyncio

    from ngym.config.schema import HeadServerConfig
    from ngym.server.process import raise_open_file_limit
    from tests.e2e.test_replicas import episodes

    raise_open_file_limit()
    replicas = by_name(deployment.instances())[COUNTER]
    assert len({r["node_id"] for r in replicas}) >= 2, replicas  # SPREAD: not all on one node
    port = int(deployment.head.rsplit(":", 1)[1])
    assert HeadServerConfig(port=port).url == deployment.head
    where, calls = asyncio.run(episodes(port, 1000))
    per_replica = [where.count(i) for i in range(3)]
    assert min(per_replica) >= 150, per_replica
    assert sum(calls) == 1000 * 4


def counter_input(workdir: Path) -> None:
    rows = [json.loads(line) | {"agent_ref": {"name": "example_session_state_mgmt_simple_agent"}}
            for line in (workdir / "resources_servers/example_session_state_mgmt/data/example.jsonl").read_text().splitlines()]
    (workdir / "results/counter.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_kill_9_of_a_replica_on_a_worker_node_mid_collection(cluster: Cluster, workdir: Path, deployment: Deployment) -> None:
    counter_input(workdir)
    proc = collect(workdir, deployment.head, "results/counter.jsonl", "results/counter_out.jsonl",
                   "+num_repeats=60", "+num_samples_in_parallel=48")
    out = workdir / "results/counter_out.jsonl"
    deadline = time.monotonic() + 180
    while (not out.exists() or out.read_text().count("\n") < 20) and time.monotonic() < deadline:
        time.sleep(0.05)
    replicas = by_name(deployment.instances())[COUNTER]
    head_ip = cluster.nodes["head"]
    victim = next((r for r in replicas if r["replica"] > 0 and (r["node"] != head_ip or not cluster.netns)), replicas[-1])
    os.kill(victim["pid"], signal.SIGKILL)
    assert out.read_text().count("\n") < 300, "the kill must land mid-collection"
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stdout + stderr
    rows = read_jsonl(out)
    keys = sorted((r["_ng_task_index"], r["_ng_rollout_index"]) for r in rows)
    assert keys == [(t, r) for t in range(5) for r in range(60)]  # 0 lost, 0 duplicated
    assert all(r["reward"] == 1.0 for r in rows)  # no lost episode scored
    failures_path = workdir / "results/counter_out_failures.jsonl"
    failures = read_jsonl(failures_path) if failures_path.exists() else []
    assert not [f for f in failures if not f.get("retried")], failures  # 0 failed rollouts
    if hasattr(collect_module, "retried_record"):  # failed attempts recorded (sharded collection, issue 17)
        assert "replica_lost" in {f["kind"] for f in failures}
    # the launcher named the replica, its node and its last lines, and restarted it in place
    key = f"{COUNTER}#{victim['replica']}"
    deadline = time.monotonic() + 60
    while f"{key!r} restarted and answering" not in deployment.output and time.monotonic() < deadline:
        time.sleep(0.2)
    assert (f"Server {key!r} (replica {victim['replica']} of 3 of {COUNTER!r}, resources_servers/example_session_state_mgmt, "
            f"on node {victim['node']}, pid {victim['pid']}, {victim['url']}) exited with code -9") in deployment.output
    assert "Its last log lines:" in deployment.output and f"{key!r} restarted and answering" in deployment.output
    again = next(r for r in by_name(deployment.instances())[COUNTER] if r["replica"] == victim["replica"])
    assert again["status"] == "running" and again["restarts"] == 1 and again["pid"] != victim["pid"]
    assert (again["url"], again["node_id"], again["supervisor_pid"]) == (victim["url"], victim["node_id"], victim["supervisor_pid"])
    # ng_status says it too: which replica, when, where, its last lines
    status = subprocess.run(["ng_status", f"+head_server.port={deployment.head.rsplit(':', 1)[1]}"], cwd=workdir,
                            env=command_env(), capture_output=True, text=True, timeout=60)
    line = next(i for i, t in enumerate(status.stdout.splitlines()) if f"{key} " in t)
    after = status.stdout.splitlines()[line + 1]
    assert f"restarted 1 time(s); the last exit: code -9 on node {victim['node']} (pid {victim['pid']})" in after, status.stdout


def test_a_replica_whose_ray_actor_died_is_placed_again_and_rejoins(cluster: Cluster, workdir: Path, deployment: Deployment) -> None:
    """``kill -9`` of the actor that runs a replica (what its node's death does to it): the server
    dies with it, a new actor is placed (on the same node: its labels allow only that one) and the
    replica answers again at its address; the seed scenario then runs through it."""
    victim = by_name(deployment.instances())[SINGLE][1]
    os.kill(victim["supervisor_pid"], signal.SIGKILL)
    key = f"{SINGLE}#1"
    deadline = time.monotonic() + 120
    while f"{key!r} restarted and answering" not in deployment.output and time.monotonic() < deadline:
        time.sleep(0.2)
    assert f"Server {key!r} (replica 1 of 2 of {SINGLE!r}" in deployment.output
    assert f"on node {victim['node']}" in deployment.output and "the Ray actor running this server" in deployment.output
    assert f"the Ray actor of {key!r} on node {victim['node']} is gone" in deployment.output
    assert f"{key!r} restarted and answering" in deployment.output
    again = by_name(deployment.instances())[SINGLE][1]
    assert again["status"] == "running" and again["supervisor_pid"] != victim["supervisor_pid"]
    assert again["node_id"] == victim["node_id"] and again["pid"] != victim["pid"]
    assert not alive(victim["pid"])  # the server died with its actor
    if again["url"] == victim["url"]:  # its port was still free there: the same address
        proc = collect(workdir, deployment.head, "results/seed.jsonl", "results/seed_again.jsonl", "+num_repeats=2")
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stdout + stderr
        assert all(o["reward"] == 1.0 for o in read_jsonl(workdir / "results/seed_again.jsonl"))


def test_ctrl_c_leaves_no_server_and_no_actor_on_any_node(cluster: Cluster, deployment: Deployment) -> None:
    rows = deployment.instances()
    pids = [r["pid"] for r in rows] + [r["supervisor_pid"] for r in rows]
    assert len(set(pids)) == 2 * len(rows) and all(alive(p) for p in pids)
    os.killpg(deployment.proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    assert deployment.proc.wait(60) is not None
    assert "all servers stopped" in deployment.output
    deadline = time.monotonic() + 30
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [p for p in pids if alive(p)]
    host, port = cluster.head.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5):  # the cluster we joined keeps running
        pass


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def test_a_placement_no_node_can_meet_stops_ng_run_naming_it_and_the_nodes(cluster: Cluster, workdir: Path) -> None:
    port = free_port()
    done = subprocess.run(
        ["ng_run", "+config_paths=[responses_api_models/scripted_model/configs/scripted_model.yaml]",
         f"+ray_head_node_address={cluster.head}", f"+head_server.port={port}", "+startup_timeout_s=5",
         "++policy_model.responses_api_models.scripted_model.placement.resources.tpu=1"],
        cwd=workdir, env={**command_env(), **ray_env()}, capture_output=True, text=True, timeout=180,
    )
    assert done.returncode != 0
    message = done.stdout + done.stderr
    assert "Ray placed no node for policy_model (num_cpus=0, num_gpus=0, resources={'tpu': 1.0}) within 5 s" in message
    assert "'sandbox': 100.0" in message and "zone" in message  # every node's resources and labels
    assert "Traceback" not in message


def test_ray_true_starts_a_local_cluster_that_ctrl_c_stops(workdir: Path) -> None:
    port = free_port()
    command = doc_block("ray-local").strip() + f" +head_server.port={port}"
    env = {**command_env(), **ray_env()}
    proc = subprocess.Popen(["bash", "-c", "exec " + command], cwd=workdir, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "servers ready" in line:
                break
        assert "servers ready" in "".join(lines), "".join(lines)
        assert "started a local Ray cluster" in "".join(lines)
        tree = descendants(proc.pid)
        names = {Path(f"/proc/{p}/comm").read_text().strip() for p in tree if alive(p)}
        assert {"gcs_server", "raylet"} <= names, names  # its own cluster, under it
        rows = httpx.get(f"http://127.0.0.1:{port}/server_instances", timeout=10).json()
        assert {r["pid"] for r in rows} <= tree and all(r["node"] for r in rows)
        os.killpg(proc.pid, signal.SIGINT)
        rest, _ = proc.communicate(timeout=90)
        assert "stopped the local Ray cluster" in rest and "all servers stopped" in rest
        deadline = time.monotonic() + 30
        while any(alive(p) for p in tree) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = {p: Path(f"/proc/{p}/cmdline").read_bytes()[:120] for p in tree if alive(p)}
        assert not left, left  # no server, actor, raylet, GCS or any other Ray process remains
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)


def test_a_trainer_that_runs_ray_hands_its_cluster_over(cluster: Cluster, workdir: Path) -> None:
    script = workdir / "trainer.py"
    script.write_text(doc_block("ray-trainer"))
    done = subprocess.run([sys.executable, str(script)], cwd=workdir, env={**command_env(), **ray_env(), "RAY_ADDRESS": cluster.head},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    results = [line.split() for line in done.stdout.splitlines() if line.startswith("example_single_tool_call_simple_agent")]
    assert len(results) == 5 and all(float(r[1]) == 1.0 for r in results), done.stdout
    assert "uses this process's Ray cluster" in done.stderr


def test_a_node_that_dies_mid_collection_loses_no_rollout(cluster: Cluster, workdir: Path) -> None:
    """Last (it kills a node of the module's cluster): 3 replicas of the stateful counter spread
    over the nodes; the worker node holding one dies (every process of its ``ray start``, SIGKILL)
    during a collection. Episodes on it end as ``replica_lost`` and run again on the others; the
    launcher places the replica again on a live node, with its new address in the head's config."""
    if not cluster.netns:
        pytest.skip("the ray.cluster_utils fallback has no node process group to kill")
    (workdir / "counter3.yaml").write_text(
        "policy_model:\n  responses_api_models:\n    scripted_model:\n      placement: {resources: {head: 1}}\n"
        "example_session_state_mgmt_simple_agent:\n  responses_api_agents:\n    simple_agent:\n"
        "      placement: {resources: {head: 1}}\n"
        f"{COUNTER}:\n  resources_servers:\n    example_session_state_mgmt:\n      num_replicas: 3\n"
    )
    port = free_port()
    configs = ("responses_api_models/scripted_model/configs/scripted_model.yaml,"
               "resources_servers/example_session_state_mgmt/configs/example_session_state_mgmt.yaml,counter3.yaml")
    proc = subprocess.Popen(
        ["ng_run", f"+config_paths=[{configs}]", f"+ray_head_node_address={cluster.head}", f"+head_server.port={port}",
         "++policy_model.responses_api_models.scripted_model.delay_s=0.02"],
        cwd=workdir, env={**command_env(), **ray_env()}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )
    run = Deployment(proc, f"http://127.0.0.1:{port}")
    import threading

    threading.Thread(target=lambda: run.lines.extend(iter(proc.stdout.readline, "")), daemon=True).start()  # type: ignore[union-attr]
    try:
        deadline = time.monotonic() + 180
        while "servers ready" not in run.output:
            assert proc.poll() is None and time.monotonic() < deadline, run.output
            time.sleep(0.2)
        replicas = by_name(run.instances())[COUNTER]
        on_workers = [r for r in replicas if r["node"] != cluster.nodes["head"]]
        if not on_workers:  # Ray's SPREAD is best effort: under load it may keep all three on the head
            pytest.skip(f"SPREAD placed every replica on the head node this time: {[r['node'] for r in replicas]}")
        victim = on_workers[-1]
        node = next(n for n, ip in cluster.nodes.items() if ip == victim["node"])
        group = cluster.groups[list(cluster.nodes).index(node)]
        counter_input(workdir)
        collector = collect(workdir, run.head, "results/counter.jsonl", "results/node_out.jsonl",
                            "+num_repeats=60", "+num_samples_in_parallel=48")
        out = workdir / "results/node_out.jsonl"
        deadline = time.monotonic() + 180
        while (not out.exists() or out.read_text().count("\n") < 20) and time.monotonic() < deadline:
            time.sleep(0.05)
        os.killpg(group, signal.SIGKILL)  # the node dies: its raylet, its workers, the servers under them
        assert out.read_text().count("\n") < 300, "the node must die mid-collection"
        stdout, stderr = collector.communicate(timeout=600)
        assert collector.returncode == 0, stdout + stderr
        rows = read_jsonl(out)
        assert sorted((r["_ng_task_index"], r["_ng_rollout_index"]) for r in rows) == [(t, r) for t in range(5) for r in range(60)]
        assert all(r["reward"] == 1.0 for r in rows)
        key = COUNTER if victim["replica"] == 0 else f"{COUNTER}#{victim['replica']}"
        deadline = time.monotonic() + 180
        while f"{key!r} restarted and answering" not in run.output and time.monotonic() < deadline:
            assert proc.poll() is None, run.output
            time.sleep(0.5)
        assert f"on node {victim['node']}, pid {victim['pid']}" in run.output and f"the Ray actor of {key!r}" in run.output
        moved = next(r for r in by_name(run.instances())[COUNTER] if r["replica"] == victim["replica"])
        assert moved["status"] == "running" and moved["node"] != victim["node"] and moved["url"] != victim["url"]
        config = httpx.get(run.head + "/global_config_dict_yaml", timeout=10).text
        assert moved["node"] in config and str(moved["url"].rsplit(":", 1)[1]) in config
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
