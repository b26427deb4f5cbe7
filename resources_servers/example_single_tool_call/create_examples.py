"""Writes data/example.jsonl: five weather questions with the get_weather tool."""

from __future__ import annotations

import json
from pathlib import Path

PERSONA = (
    "You are a helpful personal assistant that aims to be helpful and reduce any pain points the user has."
)
QUERIES = [
    "what's it like in sf?",
    "going out in sf tn",
    "humidity in sf",
    "how's the outside?",
    "get the weather for 3 cities in the us",
]
TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "",
    "strict": True,
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "description": ""}},
        "required": ["city"],
        "additionalProperties": False,
    },
}


def main() -> None:
    out = Path(__file__).parent / "data" / "example.jsonl"
    with out.open("w") as f:
        for query in QUERIES:
            row = {
                "responses_create_params": {
                    "input": [{"role": "developer", "content": PERSONA}, {"role": "user", "content": query}],
                    "tools": [TOOL],
                }
            }
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
