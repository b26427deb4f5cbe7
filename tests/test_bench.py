"""The benchmark commands of bench/README.md still run (tiny sizes; the figures are not checked)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def run(script: str, *args: str, out: Path) -> list[dict]:
    done = subprocess.run([sys.executable, f"bench/{script}", *args, "--runs", "1", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_overhead_in_process_and_colocated(tmp_path: Path) -> None:
    records = run("overhead.py", "--in-process", "--concurrency", "1", "8", "--rollouts", "16", out=tmp_path / "a.jsonl")
    records += run("overhead.py", "--colocate", "--concurrency", "4", "--rollouts", "16", out=tmp_path / "b.jsonl")
    assert [r["concurrency"] for r in records] == [1, 8, 4]
    for record in records:
        assert record["failures"] == 0 and record["rollouts"] == 16 and record["rollouts_per_s"] > 0
        assert record["cpu_ms_per_rollout_all"] > 0 and record["peak_rss_mb"] > 0


def test_floor(tmp_path: Path) -> None:
    (record,) = run("floor.py", "--stack", "asgi", "--concurrency", "4", "--rollouts", "20", out=tmp_path / "f.jsonl")
    assert record["label"] == "floor-asgi" and record["hops_per_rollout"] == 8 and record["rollouts_per_s"] > 0


def test_per_env_rows_takes_n_per_environment_in_blocks(tmp_path: Path) -> None:
    source = tmp_path / "mixed.jsonl"
    rows = [{"agent_ref": {"name": f"{env}_simple_agent"}, "i": i} for i in range(4) for env in ("a", "b", "c")]
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "blocks.jsonl"
    done = subprocess.run([sys.executable, "bench/per_env_rows.py", str(source), str(out), "--rows", "2", "--order", "c"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    got = [(json.loads(line)["agent_ref"]["name"][0], json.loads(line)["i"]) for line in out.read_text().splitlines()]
    assert got == [("c", 0), ("c", 1), ("a", 0), ("a", 1), ("b", 0), ("b", 1)]
    wrong = subprocess.run([sys.executable, "bench/per_env_rows.py", str(source), str(out), "--order", "d"],
                           cwd=REPO, capture_output=True, text=True, timeout=60)
    assert wrong.returncode != 0 and "['d']" in wrong.stderr and "['a', 'b', 'c']" in wrong.stderr


# ---- bench/peers.py: the peers on the same workload ------------------------------------------------
# The peers (verifiers, skyrl-gym, openenv-core) live in their own virtual environments
# (`python bench/peers.py --setup`, under .venv-peers/): CI does not install them, so the smoke test
# runs only the peers whose venv is there and is skipped when none is.

PEER_VENVS = REPO / ".venv-peers"


def test_peer_seed_restates_ngyms_tools_and_rewards() -> None:
    sys.path.insert(0, str(REPO / "bench" / "peer_envs"))
    try:
        import seed
    finally:
        sys.path.pop(0)
    from resources_servers.example_multi_step.app import synonym_value

    row = seed.seed_row(seed.MULTI_STEP)
    expected = row["expected_synonym_values"]
    assert [synonym_value(s) for s in row["expected_synonyms"]] == expected
    assert json.loads(seed.run_tool("get_synonym_value", '{"synonym": "Blazing"}')) == {"synonym_value": synonym_value("Blazing")}
    right = [("get_synonym_value", '{"synonym": "Blazing"}'), ("extract_synonym_values", json.dumps({"synonym_values": expected}))]
    assert seed.reward(seed.MULTI_STEP, right, expected) == 1.0
    assert seed.reward(seed.MULTI_STEP, [("extract_synonym_values", json.dumps({"synonym_values": expected[::-1]}))], expected) == 0.0
    assert seed.reward(seed.MULTI_STEP, [("get_synonym_value", '{"synonym": "Blazing"}')], expected) == 0.0
    assert seed.reward(seed.MULTI_STEP, [("extract_synonym_values", "not json")], expected) == 0.0
    assert seed.reward(seed.WEATHER, [], None) == 1.0
    assert seed.chat_messages(seed.seed_row(seed.WEATHER))[0]["role"] == "system"
    assert [t["function"]["name"] for t in seed.chat_tools(row)] == ["get_synonym_value", "extract_synonym_values"]
    assert seed.mix(3) == [seed.WEATHER, seed.MULTI_STEP, seed.WEATHER]


def test_peers_smoke(tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "bench"))
    try:
        from peers import PEERS, peer_python
    finally:
        sys.path.pop(0)
    present = [p for p in PEERS if peer_python(PEER_VENVS, p).exists()]
    if not present:
        pytest.skip("no peer venv under .venv-peers/ (python bench/peers.py --setup); CI does not install the peers")
    records = run("peers.py", "--rollouts", "8", "--modes", "oneshot", "--peers", ",".join(present), out=tmp_path / "p.jsonl")
    assert [r["system"].split()[0] for r in records] == ["ngym", *present]
    for r in records:
        assert r["written"] == 8 and r["failures"] == 0 and r["mean_reward"] == 1.0, r
        assert r["model_calls_per_rollout"] == 3.0 and r["cpu_ms_per_rollout"] > 0 and r["peak_rss_mb"] > 0, r


def test_adapter_smoke_finds_each_ecosystems_agent_and_refuses_a_reference_list_without_its_folder() -> None:
    sys.path.insert(0, str(REPO / "bench"))
    try:
        from adapter_smoke import ECOSYSTEMS, agent_names
    finally:
        sys.path.pop(0)
    for env in ECOSYSTEMS:
        config = REPO / "resources_servers" / env / "configs" / f"{env}.yaml"
        assert agent_names(config) == [f"{env}_simple_agent"]
        assert (REPO / "resources_servers" / env / "data" / "example.jsonl").exists()
    done = subprocess.run([sys.executable, "bench/adapter_smoke.py", "--reference-envs", "mcqa"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--reference-envs needs --reference" in done.stderr
