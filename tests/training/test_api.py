"""The trainer-facing API with real processes: a deployment started from a dict (scripted policy +
three example environments), mixed rows routed by agent_ref, results in completion order, and a
shutdown that leaves no child process."""

from __future__ import annotations

import asyncio
import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
from omegaconf import DictConfig

import ngym
from ngym.errors import InputError
from ngym.training import check_rows

REPO = Path(__file__).resolve().parents[2]
MODEL = "responses_api_models/scripted_model/configs/scripted_model.yaml"
ENVS = {
    "example_single_tool_call_simple_agent": "resources_servers/example_single_tool_call",
    "example_multi_step_simple_agent": "resources_servers/example_multi_step",
    "example_session_state_mgmt_simple_agent": "resources_servers/example_session_state_mgmt",
}


def mixed_rows(per_env: int = 2) -> list[dict[str, Any]]:
    rows = []
    for agent, env_dir in ENVS.items():
        lines = (REPO / env_dir / "data/example.jsonl").read_text().splitlines()[:per_env]
        rows += [json.loads(line) | {"agent_ref": {"type": "responses_api_agents", "name": agent}} for line in lines]
    return rows


def config_paths() -> list[str]:
    return [MODEL] + [f"{d}/configs/{Path(d).name}.yaml" for d in ENVS.values()]


def children_of_me() -> list[int]:
    """Live (non-zombie) processes whose parent is this test process."""
    me = os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == me and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def test_check_rows_lists_every_bad_row() -> None:
    rows: list[Any] = [
        {"responses_create_params": {"input": "x"}, "agent_ref": {"name": "a"}},
        {"responses_create_params": {"input": "x"}},
        {"responses_create_params": {"input": "x"}, "agent_ref": {"name": "nope"}},
        "not a dict",
    ]
    with pytest.raises(InputError) as e:
        check_rows(rows, ["a"])
    text = str(e.value)
    assert "3 bad row(s)" in text and "row 1: no agent_ref.name" in text and "'nope'" in text and "row 3" in text
    tasks = check_rows(rows[:1], ["a"], num_repeats=3)
    assert [t.key for t in tasks] == [(0, 0), (0, 1), (0, 2)]


@pytest.mark.slow
def test_deploy_from_dict_runs_mixed_rows_and_stops_everything() -> None:
    before = set(children_of_me())
    log = io.StringIO()
    with ngym.deploy({"config_paths": config_paths()}, policy_base_url=["http://127.0.0.1:1/v1", "http://127.0.0.1:2/v1"], out=log) as d:
        pids = d.pids
        assert len(pids) == 7 and set(ENVS) <= set(d.agents)
        assert list(d.config.policy_base_url) == ["http://127.0.0.1:1/v1", "http://127.0.0.1:2/v1"]
        rows = mixed_rows()

        async def stream() -> list[ngym.RolloutResult]:
            return [r async for r in d.rollouts(rows, num_repeats=2, concurrency=4)]

        results = asyncio.run(stream())
        assert len(results) == 12
        assert sorted(r.key for r in results) == [(t, k) for t in range(6) for k in range(2)]
        for r in results:
            assert r.ok and r.reward == 1.0, r
            assert r.result is not None and r.result["agent_ref"]["name"] == r.agent == r.row["agent_ref"]["name"]
        by_agent = {r.agent for r in results}
        assert by_agent == set(ENVS)
        # the synchronous helper
        again = d.run(rows[:2])
        assert [r.reward for r in again] == [1.0, 1.0]
        # a row for an agent that is not running: nothing is sent, the error names it
        with pytest.raises(InputError, match="not in this deployment"):
            d.run([rows[0] | {"agent_ref": {"name": "ghost_agent"}}])
    assert [p for p in pids if Path(f"/proc/{p}").exists() and (Path(f"/proc/{p}/stat").read_text().split(")")[1].split()[0] != "Z")] == []
    assert set(children_of_me()) - before == set()


@pytest.mark.slow
def test_reference_names_run_helper_and_run_examples(tmp_path: Path) -> None:
    from nemo_gym.cli import GlobalConfigDictParserConfig, RunHelper
    from nemo_gym.rollout_collection import RolloutCollectionHelper
    from nemo_gym.server_utils import HEAD_SERVER_KEY_NAME, BaseServerConfig

    assert ngym.RunHelper is RunHelper and HEAD_SERVER_KEY_NAME == "head_server"
    from ngym.config.deployment import pick_free_port

    port = pick_free_port("127.0.0.1", 20001, 30000, set())
    initial = {"config_paths": config_paths(), HEAD_SERVER_KEY_NAME: {"host": "127.0.0.1", "port": port}}
    initial["policy_model_name"], initial["policy_api_key"], initial["policy_base_url"] = "m", "dummy_key", ["http://x/v1"]
    before = set(children_of_me())
    rh = RunHelper()
    rh.start(
        global_config_dict_parser_config=GlobalConfigDictParserConfig(
            dotenv_path=tmp_path / "absent_env.yaml",  # NeMo RL points at a file that may not exist
            initial_global_config_dict=DictConfig(initial),
            skip_load_from_cli=True,
        )
    )
    try:
        rows = [r | {"_rowidx": i} for i, r in enumerate(mixed_rows(1))]
        head = BaseServerConfig(host="127.0.0.1", port=port)

        async def collect() -> list[tuple[dict[str, Any], dict[str, Any]]]:
            helper = RolloutCollectionHelper()
            out = []
            for future in helper.run_examples(examples=rows, head_server_config=head, semaphore=asyncio.Semaphore(2)):
                out.append(await future)
            await helper.aclose()
            return out

        pairs = asyncio.run(collect())
        assert sorted(row["_rowidx"] for row, _ in pairs) == [0, 1, 2]
        for row, result in pairs:
            assert result["reward"] == 1.0 and result["agent_ref"]["name"] == row["agent_ref"]["name"]
            assert "_ng_task_index" not in row  # the caller's row comes back as it was
    finally:
        rh.shutdown()
    assert set(children_of_me()) - before == set()
