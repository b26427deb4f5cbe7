"""The seed mix for the peers, stdlib only (each peer runs in its own virtual environment, without ngym).

The same rows as ``bench/user_path.py``: the first row of
``resources_servers/example_single_tool_call/data/example.jsonl`` (get_weather: 2 model calls) and of
``resources_servers/example_multi_step/data/example.jsonl`` (get_synonym_value x2, then
extract_synonym_values: 4 model calls), alternating. The tools and the rewards are ngym's, restated:

* ``get_weather(city)`` -> ``{"city": city, "weather_description": "The weather in <city> is cold."}``;
  every weather rollout is rewarded 1.0 (ngym's ``example_single_tool_call.verify``).
* ``get_synonym_value(synonym)`` -> ``{"synonym_value": sum of its code points}``;
  ``extract_synonym_values(values)`` -> ``{"success": true}``; reward 1.0 iff the last
  ``extract_synonym_values`` call lists exactly the row's ``expected_synonym_values`` in order
  (ngym's ``example_multi_step.verify``).

A peer's own idiom wraps these; the rows are converted to chat messages and chat tools.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
WEATHER = "example_single_tool_call"
MULTI_STEP = "example_multi_step"
ENVS = (WEATHER, MULTI_STEP)


def seed_row(env: str) -> dict[str, Any]:
    """The first row of the environment's example file, as stored."""
    path = REPO / "resources_servers" / env / "data" / "example.jsonl"
    row: dict[str, Any] = json.loads(path.read_text().splitlines()[0])
    return row


def chat_messages(row: dict[str, Any]) -> list[dict[str, str]]:
    """The row's Responses input as chat messages (the rows hold plain-text messages only). The weather
    row's ``developer`` message becomes ``system`` (verifiers 0.2 refuses the developer role; the chat
    API treats both as the system prompt, and so does the scripted policy)."""
    return [
        {"role": "system" if m["role"] == "developer" else m["role"], "content": m["content"]}
        for m in row["responses_create_params"]["input"]
    ]


def chat_tools(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The row's Responses function tools as chat completions tools."""
    return [
        {
            "type": "function",
            "function": {"name": t["name"], "description": t.get("description", ""), "parameters": t["parameters"]},
        }
        for t in row["responses_create_params"].get("tools", [])
    ]


def mix(n: int) -> list[str]:
    """The environment of each of N rollouts: weather, multi_step, weather, ..."""
    return [ENVS[i % 2] for i in range(n)]


# ---- ngym's tools and rewards, restated ---------------------------------------------------------


def get_weather(city: str) -> dict[str, Any]:
    return {"city": city, "weather_description": f"The weather in {city} is cold."}


def get_synonym_value(synonym: str) -> dict[str, Any]:
    return {"synonym_value": sum(map(ord, synonym))}


def extract_synonym_values(synonym_values: list[int]) -> dict[str, Any]:
    return {"success": True}


TOOLS = {
    "get_weather": get_weather,
    "get_synonym_value": get_synonym_value,
    "extract_synonym_values": extract_synonym_values,
}


def run_tool(name: str, arguments: str) -> str:
    """A tool call's output as the JSON text the model reads (an error text for a bad call)."""
    try:
        return json.dumps(TOOLS[name](**json.loads(arguments)))
    except (KeyError, TypeError, ValueError) as e:
        return json.dumps({"error": f"{type(e).__name__}: {e}"})


def last_extracted(calls: list[tuple[str, str]]) -> list[int]:
    """Values of the last extract_synonym_values call among (name, arguments) pairs, or []."""
    for name, arguments in reversed(calls):
        if name == "extract_synonym_values":
            try:
                values = json.loads(arguments).get("synonym_values", [])
            except (ValueError, AttributeError):
                return []
            return [v for v in values if isinstance(v, int)] if isinstance(values, list) else []
    return []


def reward(env: str, calls: list[tuple[str, str]], expected: list[int] | None) -> float:
    """ngym's verdict for the environment, from the tool calls the model made."""
    if env == WEATHER:
        return 1.0
    return float(last_extracted(calls) == (expected or []))


# ---- the report every driver prints ------------------------------------------------------------


class Report:
    """Times and counts of one driver run; ``emit`` prints one JSON line prefixed ``PEER_RESULT``."""

    def __init__(self, peer: str, version: str) -> None:
        self.peer = peer
        self.version = version
        self.t_ready: float | None = None
        self.t_done: float | None = None
        self.rewards: dict[str, list[float]] = {env: [] for env in ENVS}
        self.failures = 0

    def ready(self) -> None:
        """Built and about to collect: ``bench/peers.py`` times start-up from exec to this line."""
        self.t_ready = time.monotonic()
        print("PEER_READY", flush=True)

    def done(self) -> None:
        self.t_done = time.monotonic()

    def emit(self, **extra: Any) -> None:
        all_rewards = [r for rs in self.rewards.values() for r in rs]
        collect_s = (self.t_done or 0) - (self.t_ready or 0)
        record = {
            "peer": self.peer,
            "version": self.version,
            "written": len(all_rewards),
            "failures": self.failures,
            "mean_reward": sum(all_rewards) / len(all_rewards) if all_rewards else None,
            "mean_reward_by_env": {e: (sum(r) / len(r) if r else None) for e, r in self.rewards.items()},
            "collect_s": round(collect_s, 3),
            "driver_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "pid": os.getpid(),
            **extra,
        }
        print("PEER_RESULT " + json.dumps(record), flush=True)
        sys.stdout.flush()
