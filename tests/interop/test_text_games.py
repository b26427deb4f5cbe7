"""Text games as ngym environments: TextArena single-player games and Gymnasium text environments
played through the real routes (state per episode, the game's reward), and refusals."""

from __future__ import annotations

from typing import Any

import pytest

from ngym.devkit.testing.asgi import wire
from ngym.interop.text_games import TextGamesServer, UnsupportedGame, make_game, make_row, plain
from ngym.server.client import ServerClient, response_cookies
from tests.fakes import make

pytestmark = pytest.mark.anyio
pytest.importorskip("textarena")
pytest.importorskip("gymnasium")

FROZEN = {"left": 0, "down": 1, "right": 2, "up": 3}


@pytest.fixture
def client() -> ServerClient:
    return wire({"env": make(TextGamesServer, "env", domain="games")})


async def play(client: ServerClient, row: dict[str, Any], moves: list[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    seeded = await client.post("env", "/seed_session", json=row)
    assert seeded.status_code == 200, seeded.text
    cookies = response_cookies(seeded)
    answers = []
    for move in moves:
        answers.append((await client.post("env", "/play", json={"action": move}, cookies=cookies)).json())
        if answers[-1]["done"]:
            break
    verified = await client.post("env", "/verify", json={**row, "response": {"output": []}}, cookies=cookies)
    assert verified.status_code == 200, verified.text
    return verified.json(), answers


def target_of(seed: int) -> int:
    """GuessTheNumber's secret for a seed, found by bisection through the game itself."""
    game = make_game("textarena:GuessTheNumber-v0", seed)
    game.reset()
    lo, hi = 1, 20
    while True:
        guess = (lo + hi) // 2
        text, done = game.step(f"[{guess}]")
        if done:
            return guess
        lo, hi = (guess + 1, hi) if "higher" in text else (lo, guess - 1)


async def test_guess_the_number_won_lost_and_per_episode(client: ServerClient) -> None:
    target = target_of(7)
    row = make_row("textarena:GuessTheNumber-v0", 7, "agent")
    won, answers = await play(client, row, [f"[{target}]"])
    assert won["reward"] == 1.0 and won["finished"] is True and answers[-1]["done"]
    wrong = 1 if target != 1 else 2
    lost, _ = await play(client, row, [f"[{wrong}]"] * 30)  # the same wrong guess until the turn limit
    assert lost["finished"] is True and lost["reward"] < 1.0
    unfinished, answers = await play(client, row, [f"[{wrong}]"])
    assert (unfinished["reward"], unfinished["finished"]) == (0.0, False)
    assert "higher" in answers[0]["observation"] or "lower" in answers[0]["observation"]


async def test_mastermind_feedback_comes_from_the_game(client: ServerClient) -> None:
    row = make_row("textarena:Mastermind-v0", 1, "agent")
    _, answers = await play(client, row, ["[1 2 3 4]"])
    assert "peg" in answers[0]["observation"] and answers[0]["done"] is False


async def test_frozen_lake_sums_the_environments_rewards(client: ServerClient) -> None:
    row = make_row("gymnasium:FrozenLake-v1", 0, "agent", FROZEN)
    assert "[S]" in row["responses_create_params"]["input"][0]["content"], "the agent's cell is marked without colours"
    result, answers = await play(client, row, ["up"] * 200)
    assert result["finished"] is True and result["reward"] in (0.0, 1.0)
    # a move the environment cannot take is answered to the model; the episode goes on
    seeded = await client.post("env", "/seed_session", json=row)
    bad = await client.post("env", "/play", json={"action": "jump"}, cookies=response_cookies(seeded))
    assert bad.json() == {"observation": "invalid action 'jump': answer an integer from 0 to 3 or one of left, down, right, up", "done": False}


async def test_reaching_the_goal_scores_one(client: ServerClient) -> None:
    row = {**make_row("gymnasium:CliffWalking-v1", 0, "agent"), "max_steps": 50}
    result, _ = await play(client, row, ["0"] + ["1"] * 11 + ["2"])  # up, right x11, down: the goal
    assert result["finished"] is True and result["reward"] == -13.0  # CliffWalking: -1 per step


@pytest.mark.parametrize(
    ("game", "says"),
    [
        ("gymnasium:CartPole-v1", "CartPole-v1 has no text observation"),
        ("gymnasium:Pendulum-v1", "has no text observation"),
        ("textarena:TicTacToe-v0", "only single-player TextArena games"),
        ("textarena:NoSuchGame-v0", "cannot be made"),
        ("chess", "write 'textarena:<id>'"),
    ],
)
async def test_games_that_cannot_be_played_as_text_are_refused(client: ServerClient, game: str, says: str) -> None:
    with pytest.raises(UnsupportedGame, match=says):
        make_game(game, 0).reset()
    answer = await client.post("env", "/seed_session", json={"game": game, "seed": 0})
    assert answer.status_code == 400 and says in answer.json()["error"] and answer.json()["kind"] == "bad_input"


async def test_verify_without_a_game_is_a_verifier_error(client: ServerClient) -> None:
    row = {**make_row("textarena:GuessTheNumber-v0", 0, "agent"), "response": {"output": []}}
    answer = await client.post("env", "/verify", json=row)
    assert answer.status_code == 500 and answer.json()["kind"] == "verifier_error"


def test_plain_marks_the_highlighted_cell() -> None:
    assert plain("SF\x1b[41mF\x1b[0mH\x1b[1m") == "SF[F]H"
