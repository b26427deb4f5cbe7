"""Writes data/example.jsonl: 'add A then add B then get the count' with a seeded initial count."""

from __future__ import annotations

import json
from pathlib import Path

TOOLS = [
    {
        "type": "function",
        "name": "increment_counter",
        "description": "",
        "strict": True,
        "parameters": {
            "type": "object",
            "properties": {"count": {"type": "integer", "description": ""}},
            "required": ["count"],
            "additionalProperties": False,
        },
    },
    {
        "type": "function",
        "name": "get_counter_value",
        "description": "",
        "strict": True,
        "parameters": {"type": "object", "properties": {}, "required": [], "additionalProperties": False},
    },
]


def main() -> None:
    out = Path(__file__).parent / "data" / "example.jsonl"
    with out.open("w") as f:
        for i in range(5):
            a, b, initial = 3 * i + 1, 3 * i + 2, 3 * i + 3
            row = {
                "responses_create_params": {
                    "input": [{"role": "user", "content": f"add {a} then add {b} then get the count"}],
                    "tools": TOOLS,
                },
                "initial_count": initial,
                "expected_count": initial + a + b,
            }
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
