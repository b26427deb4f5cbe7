"""Rows checked up front against the task fields their environment declares (``GET /spec``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from omegaconf import OmegaConf

from ngym.devkit.testing.asgi import in_process_client
from ngym.errors import InputError
from ngym.rollout.collect import Task
from ngym.rollout.task_fields import check_task_fields, row_problems
from resources_servers.example_multi_step.app import MultiStepResourcesServer
from resources_servers.example_single_tool_call.app import WeatherResourcesServer
from tests.fakes import make

pytestmark = pytest.mark.anyio

SCHEMA = MultiStepResourcesServer.spec()["task_schema"]


@pytest.mark.parametrize(("row", "expected"), [
    ({"expected_synonym_values": [1, 2]}, []),
    ({"expected_synonym_values": [1], "id": None, "minefield_label": "x", "extra": object()}, []),
    ({}, ["missing task field 'expected_synonym_values'"]),
    ({"expected_synonym_values": "1, 2"}, ["task field 'expected_synonym_values' must be array (got '1, 2')"]),
    ({"expected_synonym_values": [], "id": "seven"}, ["task field 'id' must be integer or null (got 'seven')"]),
    ({"expected_synonym_values": [], "id": True}, ["task field 'id' must be integer or null (got True)"]),
    ({"expected_synonym_values": [], "id": 3.0}, []),  # pydantic takes 3.0 as an int
])
def test_row_problems_read_required_fields_and_top_level_types(row: dict[str, Any], expected: list[str]) -> None:
    assert row_problems(row, SCHEMA) == expected


def clients() -> Any:
    reference_style = FastAPI()  # no /spec: 404

    @reference_style.post("/verify")
    async def verify() -> dict[str, float]:
        return {"reward": 1.0}

    apps = {"multi": make(MultiStepResourcesServer, "multi", domain="agent").build_app(),
            "weather": make(WeatherResourcesServer, "weather", domain="agent").build_app(), "ref": reference_style}
    client = in_process_client(apps)
    client.config = OmegaConf.create({
        f"{env}_agent": {"responses_api_agents": {"simple_agent": {"resources_server": {"type": "resources_servers", "name": env}}}}
        for env in apps
    })
    return client


def task(agent: str, line: int, **row: Any) -> Task:
    return Task(row, agent, line)


async def test_a_row_missing_its_task_field_is_bad_input_naming_file_line_and_field(tmp_path: Path) -> None:
    client = clients()
    path = tmp_path / "in.jsonl"
    tasks = [task("multi_agent", 1, expected_synonym_values=[1]), task("multi_agent", 2), task("multi_agent", 2),
             task("weather_agent", 3), task("ref_agent", 4), task("no_config_agent", 5)]
    with pytest.raises(InputError) as e:
        await check_task_fields(client, path, tasks)
    message = str(e.value)
    assert message.startswith("bad_input: 1 row problem(s)")  # the repeat of line 2 is the same row
    assert f"{path}:2: missing task field 'expected_synonym_values' (environment 'multi', agent 'multi_agent')" in message
    # an environment without task fields, one without /spec (reference style), an agent without config: no problem
    await check_task_fields(client, path, tasks[:1] + tasks[3:])
    await client.aclose()
