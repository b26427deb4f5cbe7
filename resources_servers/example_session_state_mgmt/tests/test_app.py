from __future__ import annotations

import pytest

from ngym.server.client import response_cookies
from ngym.devkit.testing.asgi import wire
from ngym.devkit.testing.replay import replay
from resources_servers.example_session_state_mgmt.app import CounterResourcesServer
from tests.fakes import COMPAT, compat_rows, make

pytestmark = pytest.mark.anyio


@pytest.fixture
def server():
    return make(CounterResourcesServer, "env", domain="agent", session_ttl_s=60)


async def test_counter_is_per_session_and_verified(server) -> None:
    client = wire({"env": server})
    seeded = await client.post("env", "/seed_session", json={"initial_count": 3, "expected_count": 7})
    cookies = response_cookies(seeded)
    assert cookies, "seeding starts a session"
    await client.post("env", "/increment_counter", json={"count": 4}, cookies=cookies)
    assert (await client.post("env", "/get_counter_value", cookies=cookies)).json() == {"count": 7}
    # another episode does not see it
    assert (await client.post("env", "/get_counter_value")).json() == {"count": 0}
    row = {"responses_create_params": {"input": "x"}, "response": {"output": []}, "expected_count": 7}
    assert (await client.post("env", "/verify", json=row, cookies=cookies)).json()["reward"] == 1.0
    assert (await client.post("env", "/verify", json=row)).json()["reward"] == 0.0


async def test_forged_cookie_starts_a_new_session(server) -> None:
    client = wire({"env": server})
    cookies = response_cookies(await client.post("env", "/seed_session", json={"initial_count": 5, "expected_count": 5}))
    name, value = next(iter(cookies.items()))
    forged = {name: value.split(".")[0] + ".0000"}
    assert (await client.post("env", "/get_counter_value", cookies=forged)).json() == {"count": 0}


async def test_close_session_drops_state(server) -> None:
    client = wire({"env": server})
    cookies = response_cookies(await client.post("env", "/seed_session", json={"initial_count": 5, "expected_count": 5}))
    assert len(server.episodes) == 1
    assert (await client.post("env", "/close_session", cookies=cookies)).json() == {"closed": True}
    assert len(server.episodes) == 0


@pytest.mark.skipif(not COMPAT.exists(), reason="shared/compat not present")
async def test_replaying_recorded_rollouts_gives_recorded_rewards(server) -> None:
    client = wire({"env": server})
    inputs = {r["responses_create_params"]["input"][0]["content"]: r for r in compat_rows("example_session_state_mgmt")}
    for rollout in compat_rows("example_session_state_mgmt", "example_rollouts.jsonl"):
        task = inputs[rollout["responses_create_params"]["input"][0]["content"]]
        row = {**rollout, "initial_count": task["initial_count"], "expected_count": task["expected_count"]}
        result = await replay(client, "env", row)
        assert result.tool_mismatches == []
        assert result.verify["reward"] == rollout["reward"]
