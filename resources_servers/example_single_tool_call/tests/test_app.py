from __future__ import annotations

import pytest

from ngym.devkit.testing.asgi import wire
from ngym.devkit.testing.replay import replay
from resources_servers.example_single_tool_call.app import WeatherResourcesServer
from tests.fakes import COMPAT, compat_rows, make

pytestmark = pytest.mark.anyio


@pytest.fixture
def client():
    return wire({"env": make(WeatherResourcesServer, "env", domain="agent")})


async def test_get_weather(client) -> None:
    answer = await client.post("env", "/get_weather", json={"city": "Paris"})
    assert answer.json() == {"city": "Paris", "weather_description": "The weather in Paris is cold."}
    assert (await client.post("env", "/get_weather", json={"town": "Paris"})).status_code == 422


@pytest.mark.skipif(not COMPAT.exists(), reason="shared/compat not present")
async def test_replaying_recorded_rollouts_gives_recorded_rewards(client) -> None:
    rollouts = compat_rows("example_single_tool_call", "example_rollouts.jsonl")
    assert len(rollouts) == 5
    for rollout in rollouts:
        result = await replay(client, "env", rollout)
        assert result.status == 200
        assert result.tool_mismatches == []
        assert result.verify["reward"] == rollout["reward"]
