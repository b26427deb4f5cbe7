"""Mastermind rules: secret codes by seed, feedback, legal-move checks, rewards, and a solver.

A code is a string of ``length`` letters from the first ``colors`` letters of the alphabet ("ABCDEF"
for six colours), with repeats or not. Feedback for a guess: ``exact`` pegs (right letter, right
place) and ``misplaced`` (right letter, wrong place), the standard rule. Pure functions: no I/O.
"""

from __future__ import annotations

import itertools
import random
import string
from collections import Counter

from pydantic import BaseModel, Field, model_validator


class Puzzle(BaseModel):
    """One game's settings (a row's ``puzzle`` field); the secret comes from ``seed``, not the row."""

    seed: int
    length: int = Field(4, ge=2, le=8)
    colors: int = Field(6, ge=2, le=26)
    repeats: bool = True
    max_guesses: int = Field(10, ge=1, le=50)

    @model_validator(mode="after")
    def _enough_colors(self) -> Puzzle:
        if not self.repeats and self.colors < self.length:
            raise ValueError(f"{self.colors} colors cannot fill {self.length} places without repeats")
        return self

    @property
    def alphabet(self) -> str:
        return string.ascii_uppercase[: self.colors]


def secret_for(puzzle: Puzzle) -> str:
    """The secret code of ``puzzle`` (deterministic in its seed and settings)."""
    r = random.Random(f"mastermind/{puzzle.seed}/{puzzle.length}/{puzzle.colors}/{puzzle.repeats}")
    if puzzle.repeats:
        return "".join(r.choice(puzzle.alphabet) for _ in range(puzzle.length))
    return "".join(r.sample(puzzle.alphabet, puzzle.length))


def feedback(secret: str, guess: str) -> tuple[int, int]:
    """``(exact, misplaced)`` pegs of ``guess`` against ``secret``."""
    exact = sum(s == g for s, g in zip(secret, guess, strict=True))
    common = sum((Counter(secret) & Counter(guess)).values())
    return exact, common - exact


def normalize(guess: str) -> str:
    """Upper case, spaces, commas and dashes removed ("a b-c,d" -> "ABCD")."""
    return "".join(ch for ch in guess.upper() if ch not in " ,-")


def illegal(puzzle: Puzzle, guess: str) -> str | None:
    """Why ``guess`` (normalized) is not a legal move, or None."""
    if len(guess) != puzzle.length:
        return f"a guess has exactly {puzzle.length} letters, got {len(guess)} ({guess!r})"
    bad = sorted(set(guess) - set(puzzle.alphabet))
    if bad:
        return f"letters {bad} are not colors; use only {puzzle.alphabet}"
    if not puzzle.repeats and len(set(guess)) != len(guess):
        return "this puzzle has no repeated colors; use each letter at most once"
    return None


class Game(BaseModel):
    """Per-episode state: the guesses so far and their feedback."""

    guesses: list[str] = Field(default_factory=list)
    feedbacks: list[tuple[int, int]] = Field(default_factory=list)
    illegal_moves: int = 0
    solved: bool = False

    def over(self, puzzle: Puzzle) -> bool:
        return self.solved or len(self.guesses) >= puzzle.max_guesses

    def play(self, puzzle: Puzzle, secret: str, guess: str) -> tuple[int, int]:
        result = feedback(secret, guess)
        self.guesses.append(guess)
        self.feedbacks.append(result)
        self.solved = result[0] == puzzle.length
        return result


def shaped_reward(puzzle: Puzzle, game: Game) -> float:
    """Solved: 1.0 for a first-guess win down to 0.5 for a win on the last guess. Not solved: up to 0.4
    for the best feedback reached (exact pegs count twice a misplaced one). 0.0 without any guess."""
    if game.solved:
        if puzzle.max_guesses == 1:
            return 1.0
        return 1.0 - 0.5 * (len(game.guesses) - 1) / (puzzle.max_guesses - 1)
    if not game.feedbacks:
        return 0.0
    best = max(2 * e + m for e, m in game.feedbacks)
    return 0.4 * best / (2 * puzzle.length)


def consistent_solver(puzzle: Puzzle, secret: str) -> list[str]:
    """Guesses of the 'first code consistent with all feedback' strategy until solved (the oracle)."""
    codes = (itertools.product(puzzle.alphabet, repeat=puzzle.length) if puzzle.repeats
             else itertools.permutations(puzzle.alphabet, puzzle.length))
    candidates = ["".join(c) for c in codes]
    r = random.Random(puzzle.seed)
    r.shuffle(candidates)
    guesses: list[str] = []
    while candidates:
        guess = candidates[0]
        guesses.append(guess)
        result = feedback(secret, guess)
        if result[0] == puzzle.length:
            return guesses
        candidates = [c for c in candidates if feedback(c, guess) == result]
    raise AssertionError("the secret was eliminated: feedback is inconsistent")
