"""Mastermind rules: feedback, legality, rewards, the solver, the generator."""

from __future__ import annotations

import pytest

from resources_servers.mastermind.generate import LEVELS, generate
from resources_servers.mastermind.mastermind_rules import (
    Game,
    Puzzle,
    consistent_solver,
    feedback,
    illegal,
    normalize,
    secret_for,
    shaped_reward,
)


@pytest.mark.parametrize(("secret", "guess", "expected"), [
    ("ABCD", "ABCD", (4, 0)), ("ABCD", "DCBA", (0, 4)), ("AABB", "ABAB", (2, 2)),
    ("AABB", "AAAA", (2, 0)), ("ABCD", "EEEE", (0, 0)), ("ABCA", "AAAB", (1, 2)),
])
def test_feedback(secret: str, guess: str, expected: tuple[int, int]) -> None:
    assert feedback(secret, guess) == expected


def test_legality() -> None:
    p = Puzzle(seed=1)
    assert normalize("a b-c,d") == "ABCD" and illegal(p, "ABCD") is None
    assert "exactly 4 letters" in (illegal(p, "ABC") or "")
    assert "not colors" in (illegal(p, "ABCZ") or "")
    assert "no repeated" in (illegal(Puzzle(seed=1, repeats=False), "AABC") or "")
    with pytest.raises(ValueError, match="cannot fill"):
        Puzzle(seed=1, colors=3, length=4, repeats=False)


def test_secrets_by_seed() -> None:
    p = Puzzle(seed=5)
    assert secret_for(p) == secret_for(Puzzle(seed=5)) and illegal(p, secret_for(p)) is None
    assert len({secret_for(Puzzle(seed=s)) for s in range(50)}) > 40
    s = secret_for(Puzzle(seed=3, repeats=False))
    assert len(set(s)) == len(s)


def test_rewards() -> None:
    p = Puzzle(seed=1, max_guesses=10)
    secret = secret_for(p)
    game = Game()
    assert shaped_reward(p, game) == 0.0
    wrong = "".join("A" if ch != "A" else "B" for ch in secret)
    game.play(p, secret, wrong)
    assert not game.solved and 0.0 <= shaped_reward(p, game) < 0.4
    game.play(p, secret, secret)
    assert game.solved and shaped_reward(p, game) == pytest.approx(1 - 0.5 / 9)
    first = Game()
    first.play(p, secret, secret)
    assert shaped_reward(p, first) == 1.0


@pytest.mark.parametrize("level", [1, 2, 4])
def test_solver_wins_within_the_limit(level: int) -> None:
    for seed in range(15):
        p = Puzzle(seed=seed, **LEVELS[level])
        guesses = consistent_solver(p, secret_for(p))
        assert guesses[-1] == secret_for(p) and len(guesses) <= p.max_guesses


def test_generator() -> None:
    rows = list(generate("train", 200, 0))
    assert rows == list(generate("train", 200, 0)) and rows != list(generate("train", 200, 1))
    assert {r["difficulty"] for r in rows} == set(LEVELS)
    assert all(secret_for(Puzzle(**r["puzzle"])) not in r["responses_create_params"]["input"][0]["content"] for r in rows)
