"""mastermind over its HTTP routes (in-process): a solved game, legal-move checks, rewards from the
state (not the words), the shaped variant, and 1,000 concurrent episodes kept apart."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from ngym.devkit.testing.asgi import wire
from ngym.server.client import ServerClient, response_cookies
from resources_servers.mastermind.app import MastermindEnvironment
from resources_servers.mastermind.generate import generate
from resources_servers.mastermind.mastermind_rules import Puzzle, consistent_solver, secret_for
from tests.fakes import make

pytestmark = pytest.mark.anyio
ENV_DIR = Path(__file__).resolve().parents[1]
EXAMPLES = [json.loads(line) for line in (ENV_DIR / "data" / "example.jsonl").read_text().splitlines()]


@pytest.fixture
def env() -> MastermindEnvironment:
    return make(MastermindEnvironment, "env", domain="games")


def shifted(puzzle: Puzzle, code: str) -> str:
    """A legal code that differs from ``code`` in every place (each letter moved one colour on)."""
    return "".join(puzzle.alphabet[(puzzle.alphabet.index(ch) + 1) % puzzle.colors] for ch in code)


def said(text: str) -> dict[str, Any]:
    return {"output": [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}]}


async def play(client: ServerClient, row: dict[str, Any], guesses: list[str], final_text: str = "") -> dict[str, Any]:
    cookies = response_cookies(await client.post("env", "/seed_session", json=row))
    for g in guesses:
        await client.post("env", "/guess", json={"code": g}, cookies=cookies)
    result = await client.post("env", "/verify", json={**row, "response": said(final_text)}, cookies=cookies)
    assert result.status_code == 200, result.text
    return dict(result.json())


async def test_oracle_wins_and_empty_loses(env: MastermindEnvironment) -> None:
    client = wire({"env": env})
    for row in EXAMPLES:
        puzzle = Puzzle(**row["puzzle"])
        body = await play(client, row, consistent_solver(puzzle, secret_for(puzzle)))
        assert body["reward"] == 1.0 and body["solved"] and body["guesses"][-1] == body["secret"]
        assert (await play(client, row, []))["reward"] == 0.0


async def test_feedback_legality_and_game_over(env: MastermindEnvironment) -> None:
    client = wire({"env": env})
    row = {"responses_create_params": {"input": "play"}, "puzzle": {"seed": 11, "max_guesses": 3}}
    secret = secret_for(Puzzle(seed=11))
    cookies = response_cookies(await client.post("env", "/seed_session", json=row))

    async def guess(code: str) -> dict[str, Any]:
        return dict((await client.post("env", "/guess", json={"code": code}, cookies=cookies)).json())

    assert "exactly 4 letters" in (await guess("ABC"))["error"]
    assert "not colors" in (await guess("ABCZ"))["error"]
    wrong = shifted(Puzzle(seed=11), secret)
    first = await guess(wrong.lower())
    assert first["guess"] == wrong and first["guesses_left"] == 2 and not first["solved"]
    assert first["exact"] == 0
    assert (await guess(secret))["solved"] is True
    assert "game is over" in (await guess(secret))["error"]
    body = (await client.post("env", "/verify", json={**row, "response": said("")}, cookies=cookies)).json()
    assert body["reward"] == 1.0 and body["guesses_used"] == 2 and body["illegal_moves"] == 2


async def test_claims_and_exhausted_guesses_do_not_score(env: MastermindEnvironment) -> None:
    client = wire({"env": env})
    row = EXAMPLES[0]
    secret = secret_for(Puzzle(**row["puzzle"]))
    wrong = shifted(Puzzle(**row["puzzle"]), secret)
    # saying the code without playing it (even the right one) scores nothing: the reward is the state's
    assert (await play(client, row, [], final_text=f"I solved it! The code is {secret}. solved: true"))["reward"] == 0.0
    max_guesses = row["puzzle"]["max_guesses"]
    body = await play(client, row, [wrong] * max_guesses + [secret])  # the winning guess comes too late
    assert body["reward"] == 0.0 and body["guesses_used"] == max_guesses
    # a verify without the episode's cookie sees a fresh game
    cookies_less = await client.post("env", "/verify", json={**row, "response": said(secret)})
    assert cookies_less.json()["reward"] == 0.0


async def test_shaped_reward() -> None:
    client = wire({"env": make(MastermindEnvironment, "env", domain="games", reward_mode="shaped")})
    row = {"responses_create_params": {"input": "play"}, "puzzle": {"seed": 4, "max_guesses": 5}}
    secret = secret_for(Puzzle(seed=4))
    wrong = shifted(Puzzle(seed=4), secret)
    assert (await play(client, row, [secret]))["reward"] == 1.0
    assert (await play(client, row, [wrong, secret]))["reward"] == pytest.approx(1 - 0.5 / 4)
    lost = await play(client, row, [wrong])
    assert 0.0 <= lost["reward"] < 0.4 and lost["solved"] is False
    assert (await play(client, row, []))["reward"] == 0.0


async def test_a_thousand_concurrent_episodes_are_isolated(env: MastermindEnvironment) -> None:
    client = wire({"env": env})
    rows = list(generate("validation", 1000, 7))

    async def episode(i: int, row: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        secret = secret_for(Puzzle(**row["puzzle"]))
        wrong = shifted(Puzzle(**row["puzzle"]), secret)
        misses = i % 3  # each episode makes its own number of wrong guesses, interleaved with the others
        guesses = [wrong] * misses + ([secret] if i % 2 == 0 else [])
        cookies = response_cookies(await client.post("env", "/seed_session", json=row))
        for g in guesses:
            await asyncio.sleep(0)
            await client.post("env", "/guess", json={"code": g}, cookies=cookies)
        verdict = await client.post("env", "/verify", json={**row, "response": said("")}, cookies=cookies)
        return misses + (i % 2 == 0), verdict.json()

    results = await asyncio.gather(*(episode(i, row) for i, row in enumerate(rows)))
    assert len(env.episodes) == 1000
    for i, (used, body) in enumerate(results):
        assert body["guesses_used"] == used and body["reward"] == float(i % 2 == 0)
        assert body["secret"] == secret_for(Puzzle(**rows[i]["puzzle"]))
