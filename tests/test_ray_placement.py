"""Ray placement without a cluster: the config keys and their checks, replicas on different
hosts, the launcher's refusal without a Ray placement, the supervisor actor's process handling
(as a plain object), and that nothing in ngym imports Ray unless the config asks for it.
The real thing (a multi-node cluster) is tests/e2e/test_ray.py."""

from __future__ import annotations

import ast
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from ngym.config.deployment import build_deployment, ray_cluster_config
from ngym.errors import AlmostServerError, ConfigError, DeploymentError, PortError
from ngym.launch.launcher import Launcher
from ngym.launch.ray_actor import ServerSupervisor, free_port, port_is_free
from ngym.server.client import instance_replicas, instance_urls

REPO = Path(__file__).resolve().parents[1]
COUNTER = "example_session_state_mgmt_resources_server"


def config(**settings: Any) -> Any:
    return OmegaConf.create({
        COUNTER: {"resources_servers": {"example_session_state_mgmt": {"entrypoint": "app.py", "domain": "agent", **settings}}},
    })


@pytest.mark.parametrize(
    ("keys", "wanted"),
    [
        ({}, False),
        ({"ray": True}, True),
        ({"ray": False}, False),
        ({"ray_head_node_address": "auto"}, True),
        ({"ray_head_node_address": "10.0.0.5:6379"}, True),
        ({"ray": False, "ray_head_node_address": "auto"}, False),  # the reference's meaning: servers stay local
        ({"ray": True, "ray_head_node_address": "10.0.0.5:6379"}, True),
    ],
)
def test_the_ray_keys_decide_where_servers_run(keys: dict[str, Any], wanted: bool) -> None:
    cfg = config()
    cfg.update(keys)
    ray = build_deployment(cfg).ray
    assert (ray is not None) == wanted
    if ray is not None:
        assert ray.ray_head_node_address == keys.get("ray_head_node_address")


@pytest.mark.parametrize(("key", "value"), [("ray", "sometimes"), ("ray", [1]), ("ray_head_node_address", 6379.5)])
def test_a_bad_ray_key_names_the_key_the_value_and_examples(key: str, value: Any) -> None:
    cfg = OmegaConf.create({key: value})
    with pytest.raises(ConfigError, match=rf"^{key}=.*\+ray=true.*ray_head_node_address=auto"):
        ray_cluster_config(cfg)


def test_placement_keys_are_checked_and_unknown_ones_refused() -> None:
    good = {"num_cpus": 2, "num_gpus": 0.5, "resources": {"sandbox": 1}, "node_labels": {"zone": "a"},
            "scheduling_strategy": "DEFAULT"}
    spec = build_deployment(config(placement=good)).servers[COUNTER]
    assert spec.placement == good
    for bad, where in [
        ({"num_gpu": 1}, "placement -> num_gpu: Extra inputs are not permitted"),
        ({"num_cpus": -1}, "placement -> num_cpus: Input should be greater than or equal to 0"),
        ({"resources": {"sandbox": "many"}}, "placement -> resources -> sandbox"),
        ({"scheduling_strategy": "PACK"}, "placement -> scheduling_strategy"),
    ]:
        with pytest.raises(AlmostServerError, match=where):
            build_deployment(config(placement=bad))


def test_replicas_on_different_hosts_are_found_by_every_client() -> None:
    """What ng_run writes after placing replicas on Ray; a client reading the config back (an agent,
    the collector) sends each replica's calls to its own host. One port on two nodes is no clash;
    on one node it is."""
    cfg = config(num_replicas=3, host="10.0.0.11", port=4001, replica_ports=[4001, 4002, 4001],
                 replica_hosts=["10.0.0.11", "10.0.0.11", "10.0.0.12"])
    assert instance_replicas(cfg) == {COUNTER: ["http://10.0.0.11:4001", "http://10.0.0.11:4002", "http://10.0.0.12:4001"]}
    assert instance_urls(cfg) == {COUNTER: "http://10.0.0.11:4001"}
    spec = build_deployment(cfg, assign_ports=False).servers[COUNTER]
    assert [(r.key, r.host, r.port) for r in spec.replicas()] == [
        (COUNTER, "10.0.0.11", 4001), (f"{COUNTER}#1", "10.0.0.11", 4002), (f"{COUNTER}#2", "10.0.0.12", 4001)]
    clash = config(num_replicas=2, host="10.0.0.11", port=4001, replica_ports=[4001, 4001],
                   replica_hosts=["10.0.0.11", "10.0.0.11"])
    with pytest.raises(PortError, match=f"Port 4001 for replica 1 of {COUNTER!r} is also set for {COUNTER!r}"):
        build_deployment(clash, assign_ports=False)


def test_replica_hosts_that_do_not_match_are_an_error() -> None:
    for hosts in (["10.0.0.11", "10.0.0.12"], ["10.0.0.99", "10.0.0.11", "10.0.0.12"]):
        cfg = config(num_replicas=3, host="10.0.0.11", port=4001, replica_hosts=hosts)
        with pytest.raises(ConfigError, match="replica_hosts .* does not match num_replicas=3 and host='10.0.0.11'"):
            build_deployment(cfg, assign_ports=False)


def test_a_pinned_port_is_known_to_be_pinned() -> None:
    assert build_deployment(config(port=4242)).servers[COUNTER].port_pinned
    assert not build_deployment(config()).servers[COUNTER].port_pinned


def test_the_launcher_refuses_a_ray_config_without_a_ray_placement() -> None:
    cfg = config()
    cfg.ray = True
    with pytest.raises(DeploymentError, match="place the servers on Ray .* ng_run and ngym.training's deploy"):
        Launcher(build_deployment(cfg))


def test_the_supervisor_runs_its_server_keeps_its_log_and_stops_it(tmp_path: Path) -> None:
    """The actor's body, as a plain object (Ray calls the same methods in its threads)."""
    supervisor = ServerSupervisor()
    script = "import os, sys, time; print('up', os.environ['SEEN'], os.environ.get('GONE')); sys.stdout.flush(); time.sleep(60)"
    pid, first = supervisor.start(["python", "-c", script], str(tmp_path), {"SEEN": "yes"}, ["GONE"])
    assert first == 0
    since, lines, done = 0, [], False
    deadline = time.monotonic() + 20
    while not any(line.startswith("up") for line in lines) and time.monotonic() < deadline:
        since, new, done = supervisor.logs(since, 1.0)
        lines += new
    assert lines[0].startswith("ngym: starting ") and "up yes None" in lines and not done
    with pytest.raises(RuntimeError, match=f"already running here \\(pid {pid}\\)"):
        supervisor.start(["python", "-c", "pass"], str(tmp_path), {}, [])
    supervisor.signal(signal.SIGKILL)
    assert supervisor.wait() == -signal.SIGKILL
    since, new, done = supervisor.logs(since, 5.0)
    assert done
    # started again (a restart): its lines follow the first run's
    pid2, first2 = supervisor.start(["python", "-c", "print('again')"], str(tmp_path), {}, [])
    assert pid2 != pid and first2 == since
    assert supervisor.wait() == 0
    since, lines, done = first2, [], False
    while not done and time.monotonic() < deadline + 20:
        since, new, done = supervisor.logs(since, 1.0)
        lines += new
    assert lines[-1] == "again" and done
    assert supervisor.stop(1.0) == 0  # already ended: its code


def test_ports_picked_on_a_node_are_free() -> None:
    port = free_port("127.0.0.1")
    assert port_is_free("127.0.0.1", port)


def _module_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in tree.body:  # statements at module level only (not in functions)
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_module_imports_ray_at_import_time() -> None:
    """Ray is imported inside functions of the Ray placement only; and that module is imported
    (inside functions) only where a config asks for Ray."""
    for path in sorted((REPO / "ngym").rglob("*.py")):
        imported = _module_level_imports(path)
        assert not {n for n in imported if n == "ray" or n.startswith("ray.")}, path
        if path.name not in ("ray_placement.py",):
            assert "ngym.launch.ray_placement" not in imported, path


def test_starting_a_deployment_without_the_ray_keys_never_imports_ray() -> None:
    code = (
        "import sys\n"
        "from omegaconf import OmegaConf\n"
        "import ngym.cli.run, ngym.cli.collect, ngym.cli.status, ngym.training, ngym.launch.launcher\n"
        "from ngym.config.deployment import build_deployment\n"
        "from ngym.launch.launcher import Launcher\n"
        f"cfg = OmegaConf.create({{'{COUNTER}': {{'resources_servers': {{'example_session_state_mgmt': "
        "{'entrypoint': 'app.py', 'domain': 'agent', 'num_replicas': 2}}}})\n"
        "Launcher(build_deployment(cfg))\n"
        "assert 'ray' not in sys.modules, 'ray was imported'\n"
        "print('no ray')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "no ray" in done.stdout, done.stdout + done.stderr


def test_without_ray_installed_a_ray_config_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from ngym.launch.ray_placement import RayPlacement

    monkeypatch.setitem(sys.modules, "ray", None)  # what an environment without the extra sees
    cfg = config()
    cfg.ray = True
    with pytest.raises(DeploymentError, match=r"Ray is not installed .* pip install -e '\.\[ray\]'"):
        RayPlacement(build_deployment(cfg))


def test_a_colocated_group_asks_for_the_sum_of_its_members() -> None:
    from ngym.launch.ray_placement import _merged

    cfg = config(placement={"num_cpus": 1, "resources": {"sandbox": 1}, "node_labels": {"zone": "a"}})
    cfg.other = {"resources_servers": {"example_single_tool_call": {
        "entrypoint": "app.py", "domain": "agent", "placement": {"num_cpus": 2, "num_gpus": 1, "resources": {"sandbox": 2}}}}}
    specs = list(build_deployment(cfg).servers.values())
    merged = _merged(specs)
    assert (merged.num_cpus, merged.num_gpus, merged.resources, merged.node_labels) == (3, 1, {"sandbox": 3}, {"zone": "a"})
