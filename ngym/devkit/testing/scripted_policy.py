"""A deterministic policy that plays the example environments well, for tests, demos and
benchmarks (it stands in for a remote LLM API; it is not a model).

It reads the conversation (Responses input items) and the offered tools, and returns the next
output items: tool calls or a final message.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ngym.wire.responses import (
    FunctionCall,
    FunctionCallOutput,
    Item,
    Message,
    OutputText,
    ResponseCreateParams,
    new_id,
)

_TERM_HINTS = {"heat": "Hot", "temperature": "Hot", "warm": "Hot", "hot": "Hot", "freezing": "Cold"}
_SYNONYM_LINE = re.compile(r"The term '([^']+)' has a synonym '([^']+)'\.")


def _message(text: str) -> Message:
    return Message(
        type="message", id=new_id("msg"), role="assistant", status="completed", content=[OutputText(text=text)]
    )


def _call(name: str, arguments: dict[str, Any]) -> FunctionCall:
    return FunctionCall(
        type="function_call",
        id=new_id("fc"),
        call_id=new_id("call"),
        name=name,
        arguments=json.dumps(arguments),
        status="completed",
    )


def _texts(items: list[Item], role: str) -> list[str]:
    return [i.text() for i in items if isinstance(i, Message) and i.role == role]


def _after_last_user(items: list[Item]) -> list[Item]:
    for k in range(len(items) - 1, -1, -1):
        item = items[k]
        if isinstance(item, Message) and item.role == "user":
            return items[k + 1 :]
    return items


def _outputs(turn: list[Item]) -> list[dict[str, Any]]:
    out = []
    for item in turn:
        if isinstance(item, FunctionCallOutput) and isinstance(item.output, str):
            try:
                out.append(json.loads(item.output))
            except json.JSONDecodeError:
                out.append({"raw": item.output})
    return out


def _weather(user: str, turn: list[Item]) -> list[Item]:
    outputs = _outputs(turn)
    if outputs:
        desc = outputs[-1].get("weather_description", "unknown")
        return [_message(f"{desc} Dress warmly!")]
    if re.search(r"\b(sf|san francisco)\b", user.lower()):
        return [_call("get_weather", {"city": "San Francisco"})]
    return [_message("Which city would you like the weather for?")]


def _synonyms(system: str, user: str, turn: list[Item]) -> list[Item]:
    table: dict[str, list[str]] = {}
    for term, synonym in _SYNONYM_LINE.findall(system):
        table.setdefault(term, []).append(synonym)
    words = re.findall(r"[a-z]+", user.lower())
    term = next((t for w in words for hint, t in _TERM_HINTS.items() if w.startswith(hint)), None)
    term = term or next((t for t in table if t.lower() in words), None)
    if term is None or term not in table:
        return [_message("I could not tell which term the query is about.")]
    done = [i for i in turn if isinstance(i, FunctionCall)]
    looked_up = [json.loads(c.arguments).get("synonym") for c in done if c.name == "get_synonym_value"]
    if any(c.name == "extract_synonym_values" for c in done):
        return [_message(f"Extracted the values of the synonyms of '{term}'.")]
    todo = [s for s in table[term] if s not in looked_up]
    if todo:
        return [_call("get_synonym_value", {"synonym": todo[0]})]
    values = [o["synonym_value"] for o in _outputs(turn) if "synonym_value" in o]
    return [_call("extract_synonym_values", {"synonym_values": values})]


def _counter(user: str, turn: list[Item], parallel: bool) -> list[Item]:
    calls = [i for i in turn if isinstance(i, FunctionCall)]
    adds = [int(n) for n in re.findall(r"add (-?\d+)", user)]
    if not calls:
        increments: list[Item] = [_call("increment_counter", {"count": n}) for n in adds]
        return increments if parallel else increments[:1]
    done_adds = sum(1 for c in calls if c.name == "increment_counter")
    if done_adds < len(adds):
        return [_call("increment_counter", {"count": adds[done_adds]})]
    if not any(c.name == "get_counter_value" for c in calls):
        return [_call("get_counter_value", {})]
    count = next((o["count"] for o in reversed(_outputs(turn)) if "count" in o), None)
    return [_message(f"The count is {count}.")]


def _guess(user: str, turn: list[Item]) -> list[Item]:
    """The OpenEnv guess environment (resources_servers/openenv): bisection on its higher/lower hints."""
    bounds = re.search(r"from (\d+) to (\d+)", user)
    lo, hi = (int(bounds.group(1)), int(bounds.group(2))) if bounds else (1, 100)
    calls = [i for i in turn if isinstance(i, FunctionCall) and i.name == "step"]
    for call, out in zip(calls, _outputs(turn)):
        guess = int(json.loads(call.arguments).get("guess", lo))
        if out.get("done"):
            return [_message(f"I found it: {guess}." if out.get("reward") else "The game is over.")]
        hint = str((out.get("observation") or {}).get("message", ""))
        if "higher" in hint:
            lo = guess + 1
        elif "lower" in hint:
            hi = guess - 1
    return [_call("step", {"guess": (lo + hi) // 2})]


def next_items(body: ResponseCreateParams) -> list[Item]:
    """The policy's next output items for this conversation."""
    items = body.input_items()
    user = (_texts(items, "user") or [""])[-1]
    system = "\n".join(_texts(items, "system") + _texts(items, "developer"))
    if body.instructions:
        system += "\n" + body.instructions
    turn = _after_last_user(items)
    tools = {t.name for t in body.tools or []}
    if "get_weather" in tools:
        return _weather(user, turn)
    if "get_synonym_value" in tools:
        return _synonyms(system, user, turn)
    if "increment_counter" in tools:
        return _counter(user, turn, parallel=body.parallel_tool_calls is not False)
    step = next((t for t in body.tools or [] if t.name == "step"), None)
    if step is not None and "guess" in (step.parameters or {}).get("properties", {}):
        return _guess(user, turn)
    return [_message(f"You said: {user}")]
