"""Tests of brevity: the reward, and the conformance check that ng_test also runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ngym.devkit.conformance import check_server
from ngym.server.client import ServerClient
from ngym.devkit.testing.asgi import wire
from resources_servers.brevity.app import BrevityResourcesServer, brevity_reward, count_words

ENV_DIR = Path(__file__).resolve().parents[1]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def client() -> ServerClient:
    settings = {"name": "env", "entrypoint": "app.py", "domain": "other"}
    config = BrevityResourcesServer.config_type().model_validate(settings)
    return wire({"env": BrevityResourcesServer(config, ServerClient({}))})


def row_answered_with(text: str) -> dict:
    first = json.loads((ENV_DIR / "data" / "example.jsonl").read_text().splitlines()[0])  # max_words 3
    message = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}
    return {**first, "response": {"output": [message] if text else []}}


def test_reward_shape() -> None:
    assert count_words("Blue, mostly. It's light-blue!") == 4
    assert [brevity_reward(n, 3) for n in (0, 1, 3, 6, 12)] == [0.0, 1.0, 1.0, 0.5, 0.25]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("text", "reward", "within"),
    [("Blue.", 1.0, True), ("It is blue.", 1.0, True), ("The sky is a bright blue.", 0.5, False), ("", 0.0, False)],
)
async def test_verify(client: ServerClient, text: str, reward: float, within: bool) -> None:
    result = (await client.post("env", "/verify", json=row_answered_with(text))).json()
    assert result["reward"] == reward and result["within_limit"] is within
    assert result["max_words"] == 3  # task fields are kept


@pytest.mark.anyio
async def test_a_row_without_max_words_is_rejected(client: ServerClient) -> None:
    row = row_answered_with("Blue.")
    del row["max_words"]
    assert (await client.post("env", "/verify", json=row)).status_code == 422


def test_conformance() -> None:
    report = check_server(ENV_DIR, should_validate_data=True)
    assert report.ok, report.format()
