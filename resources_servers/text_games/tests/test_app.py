from __future__ import annotations

import json
from pathlib import Path

import pytest

from ngym.devkit.testing.asgi import wire
from ngym.server.client import response_cookies
from resources_servers.text_games.app import TextGamesResourcesServer
from tests.fakes import make

pytestmark = pytest.mark.anyio
pytest.importorskip("textarena")
pytest.importorskip("gymnasium")

ROWS = [json.loads(line) for line in (Path(__file__).parents[1] / "data" / "example.jsonl").read_text().splitlines()]


async def test_example_rows_start_their_games_and_score_zero_unplayed() -> None:
    client = wire({"env": make(TextGamesResourcesServer, "env", domain="games")})
    for row in ROWS:
        seeded = await client.post("env", "/seed_session", json=row)
        assert seeded.status_code == 200, seeded.text
        first = seeded.json()["observation"]
        assert first and first in row["responses_create_params"]["input"][0]["content"], "the prompt holds the first observation"
        row_out = {**row, "response": {"output": []}}
        verified = await client.post("env", "/verify", json=row_out, cookies=response_cookies(seeded))
        assert verified.json()["reward"] == 0.0 and verified.json()["finished"] is False
