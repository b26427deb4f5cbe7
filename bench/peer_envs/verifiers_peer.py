"""The seed mix on Prime Intellect's ``verifiers`` (0.2.x: the ToolEnv / EnvGroup / Rubric API), run with
its own ``generate`` over an ``AsyncOpenAI`` client against the OpenAI-compatible model at ``--base-url``
(chat completions). Runs in the peers' virtual environment (``bench/peers.py`` starts it).

Theirs: ``vf.ToolEnv`` (tool schemas from the functions, the multi-turn loop, tool execution, stop
conditions), ``vf.Rubric`` (scoring), ``vf.EnvGroup`` (the mix, routing each row to its environment),
``Environment.generate`` (concurrency via ``max_concurrent``, the client wrapper, the outputs).
Ours: the two tool sets and the two reward functions (ngym's, restated in ``seed.py``), the rows.

    .venv-peers/bin/python bench/peer_envs/verifiers_peer.py --base-url http://127.0.0.1:8321/v1 --rollouts 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
from importlib.metadata import version
from typing import Any

from seed import (
    MULTI_STEP,
    WEATHER,
    Report,
    chat_messages,
    extract_synonym_values as _extract,
    get_synonym_value as _lookup,
    get_weather as _weather,
    reward,
    seed_row,
)

T0 = time.monotonic()


async def get_weather(city: str) -> str:
    """Get the current weather in a city.

    Args:
        city: The city, e.g. Paris.
    """
    return json.dumps(_weather(city))


async def get_synonym_value(synonym: str) -> str:
    """Get the value of a synonym. Returns {"synonym_value": <integer>}.

    Args:
        synonym: The synonym to get the value for.
    """
    return json.dumps(_lookup(synonym))


async def extract_synonym_values(synonym_values: list[int]) -> str:
    """Record the synonym values for the query's term. Returns {"success": <boolean>}.

    Args:
        synonym_values: The values of the term's synonyms, in order.
    """
    return json.dumps(_extract(synonym_values))


def tool_calls(completion: list[Any]) -> list[tuple[str, str]]:
    out = []
    for message in completion:
        for call in getattr(message, "tool_calls", None) or []:
            out.append((call.name, call.arguments))
    return out


async def weather_reward(completion: list[Any]) -> float:
    return reward(WEATHER, tool_calls(completion), None)


async def multi_step_reward(completion: list[Any], info: dict[str, Any]) -> float:
    return reward(MULTI_STEP, tool_calls(completion), info["expected_synonym_values"])


def build(n: int) -> Any:
    import verifiers as vf
    from datasets import Dataset

    def dataset(env: str, count: int) -> Dataset:
        row = seed_row(env)
        info = {"expected_synonym_values": row.get("expected_synonym_values", [])}
        return Dataset.from_list([{"prompt": chat_messages(row), "info": json.dumps(info)} for _ in range(count)])

    weather = vf.ToolEnv(
        eval_dataset=dataset(WEATHER, (n + 1) // 2),
        tools=[get_weather],
        rubric=vf.Rubric(funcs=[weather_reward]),
        max_turns=10,
    )
    multi_step = vf.ToolEnv(
        eval_dataset=dataset(MULTI_STEP, n // 2),
        tools=[get_synonym_value, extract_synonym_values],
        rubric=vf.Rubric(funcs=[multi_step_reward]),
        max_turns=10,
    )
    return vf.EnvGroup(envs=[weather, multi_step], env_names=[WEATHER, MULTI_STEP])


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--rollouts", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=256)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    from openai import AsyncOpenAI
    from verifiers.clients import OpenAIChatCompletionsClient

    report = Report("verifiers", version("verifiers"))
    group = build(args.rollouts)
    rows = group.get_eval_dataset().to_list()
    half = (args.rollouts + 1) // 2
    # alternate the two environments, as ngym's input file does
    inputs = [rows[i // 2] if i % 2 == 0 else rows[half + i // 2] for i in range(args.rollouts)]
    for i, row in enumerate(inputs):
        row["example_id"] = i
    client = OpenAIChatCompletionsClient(
        AsyncOpenAI(base_url=args.base_url, api_key="bench-key", max_retries=0, timeout=600)
    )
    report.ready()
    outputs = await group.generate(
        inputs, client=client, model="scripted", max_concurrent=args.concurrency, on_progress=lambda *a, **k: None
    )
    report.done()
    for out in outputs["outputs"]:
        env = out.get("task") or out.get("info", {}).get("env_id") or "?"
        error = out.get("error")
        if error:
            report.failures += 1
            continue
        report.rewards.setdefault(env, []).append(float(out["reward"]))
    report.emit(ready_s=round((report.t_ready or T0) - T0, 3))


if __name__ == "__main__":
    asyncio.run(main())
