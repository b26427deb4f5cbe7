from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("openenv.core")

from fastapi.testclient import TestClient  # noqa: E402

from ngym.interop.openenv_env import UnsupportedOpenEnv, action_parameters  # noqa: E402
from resources_servers.openenv.guess_env.models import GuessAction  # noqa: E402
from resources_servers.openenv.guess_env.server import GuessEnvironment, app  # noqa: E402

ROWS = [json.loads(line) for line in (Path(__file__).parents[1] / "data" / "example.jsonl").read_text().splitlines()]


def test_the_guess_environment_rewards_the_right_guess_only() -> None:
    env = GuessEnvironment()
    first = env.reset(seed=4)
    assert first.attempts_left == 7 and not first.done
    lo, hi = 1, 100
    while True:
        guess = (lo + hi) // 2
        observation = env.step(GuessAction(guess=guess))
        if observation.done:
            break
        assert observation.reward == 0.0
        lo, hi = (guess + 1, hi) if "higher" in observation.message else (lo, guess - 1)
    assert observation.reward == 1.0 and env.state.won
    env.reset(seed=4)
    for _ in range(7):
        last = env.step(GuessAction(guess=0))  # never right
    assert last.done and last.reward == 0.0 and "No guesses left" in last.message


def test_the_example_rows_carry_the_action_schema_as_their_tool() -> None:
    schema = TestClient(app).get("/schema").json()
    params = action_parameters(schema)
    assert params["required"] == ["guess"] and params["properties"]["guess"]["type"] == "integer"
    assert all(row["responses_create_params"]["tools"][0]["parameters"] == params for row in ROWS)
    assert [row["reset"]["seed"] for row in ROWS] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    ("action", "says"),
    [
        ({"title": "CallToolAction", "type": "object", "properties": {"type": {"default": "call_tool"}, "tool_name": {}}}, "MCP environment"),
        ({"title": "Action", "type": "object", "properties": {"metadata": {"type": "object"}}}, "MCP environment"),
        ({"type": "array", "items": {"type": "number"}}, "not an object of fields"),
    ],
)
def test_actions_a_tool_cannot_carry_are_refused(action: dict[str, object], says: str) -> None:
    with pytest.raises(UnsupportedOpenEnv, match=says):
        action_parameters({"action": action})
