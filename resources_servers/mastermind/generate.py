"""Seeded generator of Mastermind games: each row is a puzzle (settings + seed); the secret is derived
from the seed by the server and never written in the row.

Difficulty 1: 4 places, 6 colors, repeats, 10 guesses; 2: 4 places, 8 colors, 10 guesses;
3: 5 places, 8 colors, 12 guesses; 4 (no repeats): 4 places, 6 colors, 8 guesses.
"""

from __future__ import annotations

from ngym.data.generators import generator_cli

import random
from collections.abc import Iterator
from typing import Any

from resources_servers.mastermind.mastermind_rules import Puzzle

LEVELS: dict[int, dict[str, Any]] = {
    1: {"length": 4, "colors": 6, "repeats": True, "max_guesses": 10},
    2: {"length": 4, "colors": 8, "repeats": True, "max_guesses": 10},
    3: {"length": 5, "colors": 8, "repeats": True, "max_guesses": 12},
    4: {"length": 4, "colors": 6, "repeats": False, "max_guesses": 8},
}

PROMPT = """Let's play Mastermind. I have chosen a secret code of {length} letters, each one of {alphabet}{repeat_note}.
Find it with the `guess` tool: for each guess you get `exact` (right letter in the right place) and `misplaced` (right letter, wrong place). You have {max_guesses} guesses; the game ends when you find the code. Use the feedback to narrow down the code, and stop when `solved` is true."""


def prompt_for(puzzle: Puzzle) -> str:
    note = " (letters may repeat)" if puzzle.repeats else " (no letter appears twice)"
    return PROMPT.format(length=puzzle.length, alphabet=", ".join(puzzle.alphabet), repeat_note=note,
                         max_guesses=puzzle.max_guesses)


def generate(split: str, num_rows: int, seed: int) -> Iterator[dict[str, Any]]:
    """The ``ng_prepare_data`` generator protocol: rows of ``split``, deterministic in ``seed``."""
    r = random.Random(f"mastermind/{split}/{seed}")
    for index in range(num_rows):
        level = r.choices(list(LEVELS), weights=[4, 3, 1, 2])[0]
        puzzle = Puzzle(seed=r.randrange(1 << 31), **LEVELS[level])
        yield {
            "responses_create_params": {"input": [{"role": "user", "content": prompt_for(puzzle)}]},
            "puzzle": puzzle.model_dump(),
            "difficulty": level,
            "uuid": f"{split}-{seed}-{index}",
        }


def main(argv: list[str] | None = None) -> int:
    return generator_cli(generate, __doc__, 1000, argv)


if __name__ == "__main__":
    raise SystemExit(main())
