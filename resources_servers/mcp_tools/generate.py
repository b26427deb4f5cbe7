"""Seeded generator of mcp_tools tasks: change a key-value store (served by the MCP server) into a
required final state. Each row: the instruction, ``initial_state`` (written at seed) and
``expected_state`` (what the verifier compares the store with). Eight task templates (store,
delete by value, rename a prefix, increment, sum, arg-max, move, clear a prefix) with random keys,
values and distractor keys.
"""

from __future__ import annotations

from ngym.data.generators import generator_cli

import random
from collections.abc import Callable, Iterator
from typing import Any

State = dict[str, str]
Template = Callable[[random.Random], tuple[str, State, State]]
WORDS = ["alpha", "bravo", "cedar", "delta", "ember", "fjord", "gamma", "harbor", "iris", "jade", "koala",
         "lemon", "maple", "nova", "orbit", "pixel", "quartz", "river", "sierra", "tango"]


def _names(r: random.Random, n: int) -> list[str]:
    return r.sample(WORDS, n)


def _distractors(r: random.Random, prefix: str = "misc/") -> State:
    return {f"{prefix}{w}": str(r.randint(0, 99)) for w in _names(r, r.randint(1, 3))}


def t_store(r: random.Random) -> tuple[str, State, State]:
    settings = {f"config/{w}": r.choice(["on", "off", str(r.randint(1, 500)), r.choice(WORDS)]) for w in _names(r, r.randint(2, 5))}
    listing = ", ".join(f"{k} = {v}" for k, v in settings.items())
    return f"Store these settings (key = value): {listing}.", {}, settings


def t_delete_by_value(r: random.Random) -> tuple[str, State, State]:
    initial = {f"session/{w}": r.choice(["active", "expired"]) for w in _names(r, r.randint(3, 7))}
    initial[f"session/{r.choice(WORDS)}x"] = "expired"
    expected = {k: v for k, v in initial.items() if v != "expired"}
    return "Delete every key whose value is 'expired'; keep everything else.", initial, expected


def t_rename_prefix(r: random.Random) -> tuple[str, State, State]:
    moved = {f"tmp/{w}": str(r.randint(0, 999)) for w in _names(r, r.randint(2, 4))}
    initial = {**moved, **_distractors(r)}
    expected = {("final/" + k[4:] if k.startswith("tmp/") else k): v for k, v in initial.items()}
    return ("Rename every key that starts with 'tmp/' so that it starts with 'final/' instead, keeping its value. "
            "No 'tmp/' key may remain; leave the other keys alone."), initial, expected


def t_increment(r: random.Random) -> tuple[str, State, State]:
    n = r.randint(2, 25)
    counts = {f"count/{w}": str(r.randint(0, 50)) for w in _names(r, r.randint(2, 4))}
    initial = {**counts, **_distractors(r)}
    expected = {k: str(int(v) + n) if k.startswith("count/") else v for k, v in initial.items()}
    return f"Add {n} to the number stored under every key that starts with 'count/'.", initial, expected


def t_sum(r: random.Random) -> tuple[str, State, State]:
    sales = {f"sale/{w}": str(r.randint(1, 300)) for w in _names(r, r.randint(2, 5))}
    initial = {**sales, **_distractors(r)}
    expected = {**initial, "total": str(sum(int(v) for v in sales.values()))}
    return ("Store under the key 'total' the sum of the numbers stored under the keys that start with 'sale/'. "
            "Change nothing else."), initial, expected


def t_argmax(r: random.Random) -> tuple[str, State, State]:
    values = r.sample(range(1, 1000), r.randint(3, 6))
    scores = {f"score/{w}": str(v) for w, v in zip(_names(r, len(values)), values, strict=True)}
    initial = {**scores, **_distractors(r)}
    best = max(scores, key=lambda k: int(scores[k]))
    return ("Find the key starting with 'score/' that holds the largest number, and store that key's full name "
            "under the key 'winner'. Change nothing else."), initial, {**initial, "winner": best}


def t_move(r: random.Random) -> tuple[str, State, State]:
    a, b = _names(r, 2)
    initial = {f"box/{a}": r.choice(WORDS) + str(r.randint(0, 9)), **_distractors(r)}
    expected = {k: v for k, v in initial.items() if k != f"box/{a}"}
    expected[f"box/{b}"] = initial[f"box/{a}"]
    return f"Move the value stored under 'box/{a}' to the key 'box/{b}' (the old key must be gone).", initial, expected


def t_clear_prefix(r: random.Random) -> tuple[str, State, State]:
    cache = {f"cache/{w}": str(r.randint(0, 9)) for w in _names(r, r.randint(2, 5))}
    keep = {f"data/{w}": str(r.randint(0, 9)) for w in _names(r, r.randint(1, 3))}
    return "Delete every key that starts with 'cache/', and nothing else.", {**cache, **keep}, keep


TEMPLATES: dict[str, Template] = {f.__name__.removeprefix("t_"): f for f in (
    t_store, t_delete_by_value, t_rename_prefix, t_increment, t_sum, t_argmax, t_move, t_clear_prefix)}

PROMPT = """You manage a key-value store through its tools (put, get, delete, list_keys). Keys and values are strings.

Task: {instruction}

Use the tools to do it; the store's final contents are checked. Reply "done" when finished."""


def generate(split: str, num_rows: int, seed: int) -> Iterator[dict[str, Any]]:
    """The ``ng_prepare_data`` generator protocol: rows of ``split``, deterministic in ``seed``."""
    r = random.Random(f"mcp_tools/{split}/{seed}")
    names = sorted(TEMPLATES)
    for index in range(num_rows):
        name = names[r.randrange(len(names))]
        instruction, initial, expected = TEMPLATES[name](r)
        yield {
            "responses_create_params": {"input": [{"role": "user", "content": PROMPT.format(instruction=instruction)}]},
            "initial_state": initial,
            "expected_state": expected,
            "template": name,
            "uuid": f"{split}-{seed}-{index}",
        }


def main(argv: list[str] | None = None) -> int:
    return generator_cli(generate, __doc__, 1000, argv)


if __name__ == "__main__":
    raise SystemExit(main())
