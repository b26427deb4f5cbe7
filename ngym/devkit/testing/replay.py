"""Replay a recorded rollout through a resources server: seed the session, re-run every tool call
the recording made (comparing our tool outputs with the recorded ones), then ``/verify``.

This is how recorded episodes of another system (or an older version) check an environment.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ngym.server.client import ServerClient, response_cookies


@dataclass(slots=True)
class Replay:
    verify: dict[str, Any]
    status: int
    tool_mismatches: list[str] = field(default_factory=list)


def _parsed(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


async def replay(client: ServerClient, server: str, rollout: dict[str, Any]) -> Replay:
    """Seed, replay tool calls, verify. ``rollout`` is one recorded output row."""
    row = {k: v for k, v in rollout.items() if k not in ("reward",)}
    cookies: dict[str, str] = {}
    seeded = await client.post(server, "/seed_session", json=row, cookies=cookies)
    cookies.update(response_cookies(seeded))
    recorded = {i["call_id"]: i["output"] for i in rollout["response"]["output"] if i.get("type") == "function_call_output"}
    mismatches = []
    for item in rollout["response"]["output"]:
        if item.get("type") != "function_call":
            continue
        answer = await client.post(server, f"/{item['name']}", json=json.loads(item["arguments"]), cookies=cookies)
        cookies.update(response_cookies(answer))
        expected = recorded.get(item["call_id"])
        if expected is not None and _parsed(answer.text) != _parsed(expected):
            mismatches.append(f"{item['name']}({item['arguments']}): got {answer.text!r}, recorded {expected!r}")
    verified = await client.post(server, "/verify", json=row, cookies=cookies)
    return Replay(verified.json(), verified.status_code, mismatches)
