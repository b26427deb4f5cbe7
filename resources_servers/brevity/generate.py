"""Seeded brevity tasks: a short factual question and a word limit (1-4 words).

Questions come from templates over small fact lists; every question belongs to exactly one split
(by a stable hash of its text: one in five is validation), so validation rows are never seen in
training. ``generate(split, num_rows, seed)`` is what ``ng_prepare_data`` runs for the config's
``train`` and ``validation`` datasets.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from typing import Any

SYSTEM = "You are a terse assistant. Answer in as few words as possible."

COUNTRIES = [
    "France", "Japan", "Brazil", "Canada", "Egypt", "Kenya", "India", "Mexico", "Italy", "Spain", "Germany",
    "Peru", "Chile", "Norway", "Sweden", "Poland", "Greece", "Turkey", "Vietnam", "Thailand", "Argentina",
    "Portugal", "Ireland", "Austria", "Cuba", "Nigeria", "Ghana", "Iran", "Iraq", "Nepal", "Russia", "China",
    "Australia", "Finland", "Denmark", "Belgium", "Hungary", "Colombia", "Morocco", "Senegal",
]
CATEGORIES = [
    "fruit", "vegetable", "bird", "fish", "mammal", "insect", "planet", "metal", "gas", "flower", "tree",
    "musical instrument", "sport", "board game", "programming language", "ocean", "continent", "mountain range",
    "primary color", "chess piece", "vehicle", "tool", "spice", "fabric", "gemstone", "dog breed", "cheese",
    "dance", "shape", "element", "month", "weekday", "season", "language", "currency", "river", "desert",
]
THINGS = [
    "grass", "snow", "the sun", "a banana", "a ripe tomato", "coal", "the sky on a clear day", "milk", "an orange",
    "a lemon", "blood", "chocolate", "a carrot", "an emerald", "a ruby", "a sapphire", "charcoal", "ivory",
    "a flamingo", "a crow", "a polar bear", "a pumpkin", "a lime", "an eggplant",
]
COUNTS = [
    ("days", "a week"), ("months", "a year"), ("legs", "a spider"), ("legs", "an insect"), ("sides", "a triangle"),
    ("sides", "a hexagon"), ("hours", "a day"), ("minutes", "an hour"), ("players", "a soccer team"),
    ("strings", "a violin"), ("wheels", "a bicycle"), ("continents", "the world"), ("planets", "the solar system"),
    ("cards", "a standard deck"), ("squares", "a chessboard"), ("keys", "a piano"), ("bones", "an adult human"),
    ("teeth", "an adult human mouth"), ("weeks", "a year"), ("seconds", "a minute"),
]
OPPOSITES = [
    "hot", "tall", "fast", "happy", "light", "early", "open", "full", "hard", "rich", "young", "loud", "wet",
    "strong", "empty", "north", "left", "up", "inside", "win", "buy", "begin", "push", "give",
]


def questions() -> list[str]:
    qs = [f"What is the capital of {c}?" for c in COUNTRIES]
    qs += [f"Name {'an' if c[0] in 'aeiou' else 'a'} {c}." for c in CATEGORIES]
    qs += [f"What color is {t}?" for t in THINGS]
    qs += [f"How many {a} are in {b}?" for a, b in COUNTS]
    qs += [f"What is the opposite of '{w}'?" for w in OPPOSITES]
    return qs


def split_of(question: str) -> str:
    return "validation" if int(hashlib.sha256(question.encode()).hexdigest(), 16) % 5 == 0 else "train"


def row(question: str, max_words: int) -> dict[str, Any]:
    return {
        "responses_create_params": {
            "input": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": f"{question} Answer in at most {max_words} word{'s' if max_words > 1 else ''}."},
            ]
        },
        "max_words": max_words,
    }


def generate(split: str, num_rows: int, seed: int) -> Iterator[dict[str, Any]]:
    pool = [q for q in questions() if split_of(q) == ("validation" if split == "validation" else "train")]
    rng = random.Random(seed)
    for _ in range(num_rows):
        yield row(rng.choice(pool), rng.randint(1, 4))
