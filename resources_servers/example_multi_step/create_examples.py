"""Writes data/example.jsonl: five questions about heat; the model must look up the values of the
synonyms of the term 'Hot' (Blazing, then Warm) and extract them in that order."""

from __future__ import annotations

import json
from pathlib import Path

# Our own synonym table (term -> synonyms, in the order the prompt lists them).
SYNONYMS: dict[str, list[str]] = {
    "Big": ["Enormous", "Vast"],
    "Small": ["Tiny", "Minute"],
    "Fast": ["Rapid", "Swift"],
    "Slow": ["Sluggish", "Unhurried"],
    "Cold": ["Frigid", "Chilly"],
    "Hot": ["Blazing", "Warm"],
    "Happy": ["Joyful", "Content"],
    "Sad": ["Gloomy", "Sorrowful"],
    "Bright": ["Radiant", "Luminous"],
    "Dark": ["Shadowy", "Murky"],
    "Loud": ["Deafening", "Noisy"],
    "Quiet": ["Silent", "Hushed"],
    "Old": ["Ancient", "Aged"],
    "New": ["Fresh", "Novel"],
    "Strong": ["Sturdy", "Mighty"],
    "Weak": ["Frail", "Feeble"],
    "Wet": ["Damp", "Soggy"],
    "Dry": ["Parched", "Arid"],
    "Rich": ["Wealthy", "Affluent"],
    "Poor": ["Needy", "Destitute"],
    "Easy": ["Simple", "Effortless"],
    "Hard": ["Difficult", "Arduous"],
    "Clean": ["Spotless", "Pristine"],
    "Dirty": ["Grimy", "Filthy"],
    "Calm": ["Serene", "Tranquil"],
}
QUERIES = [
    "What factors contribute to a region experiencing extremely high temperatures, and how do these factors interact?",
    "How do animals adapt to living in hot climates?",
    "What are the most efficient technologies available today, and how do they tackle the challenges of warm ambient temperatures?",
    "How does heat impact the performance and longevity of electronic devices?",
    "In what ways can urban planning reduce the effects of heat islands in major cities?",
]


def system_prompt() -> str:
    lines = [
        "# Instructions",
        "You are an extraction agent. Decide which term below the user's query is about. Then use the "
        "get_synonym_value tool to look up the value of every synonym listed for that term, one call per "
        "synonym, and finally call extract_synonym_values once with all those values, in the same order as "
        "the synonyms appear in the list. Do not look up or extract the value of the term itself.",
        "",
        "# Available synonyms",
    ]
    for term, synonyms in SYNONYMS.items():
        lines.extend(f"The term '{term}' has a synonym '{s}'." for s in synonyms)
    lines += [
        "",
        "# Example",
        "For the query \"I'm freezing\", the term is 'Cold' with the synonyms 'Frigid' and 'Chilly': look up "
        "both values, then extract them as a list in that order.",
    ]
    return "\n".join(lines)


TOOLS = [
    {
        "type": "function",
        "name": "get_synonym_value",
        "description": "Get the value of a synonym. Returns {\"synonym_value\": <integer>}.",
        "strict": True,
        "parameters": {
            "type": "object",
            "properties": {"synonym": {"type": "string", "title": "Synonym"}},
            "required": ["synonym"],
            "additionalProperties": False,
        },
    },
    {
        "type": "function",
        "name": "extract_synonym_values",
        "description": "Record the synonym values for the query's term. Returns {\"success\": <boolean>}.",
        "strict": True,
        "parameters": {
            "type": "object",
            "properties": {"synonym_values": {"type": "array", "items": {"type": "integer"}}},
            "required": ["synonym_values"],
            "additionalProperties": False,
        },
    },
]


def main() -> None:
    out = Path(__file__).parent / "data" / "example.jsonl"
    prompt = system_prompt()
    with out.open("w") as f:
        for i, query in enumerate(QUERIES):
            row = {
                "id": i,
                "responses_create_params": {
                    "input": [{"role": "system", "content": prompt}, {"role": "user", "content": query}],
                    "tools": TOOLS,
                    "parallel_tool_calls": False,
                },
                "expected_synonyms": ["Blazing", "Warm"],
                "expected_synonym_values": [711, 407],
                "minefield_label": "Hot",
                "minefield_label_value": 299,
            }
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
