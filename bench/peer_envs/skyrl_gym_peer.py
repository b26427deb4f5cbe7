"""The seed mix on NovaSky's ``skyrl-gym`` against the OpenAI-compatible model at ``--base-url``
(chat completions). Runs in the peers' virtual environment (``bench/peers.py`` starts it).

Theirs: the environment interface (``BaseTextEnv``: ``init`` / ``step`` with the model's text as the
action, observations as chat messages, reward and ``done`` from ``step``), tools as a ``ToolGroup`` of
``@tool`` methods executed through ``BaseTextEnv._execute_tool``, registration and construction with
``skyrl_gym.register`` / ``skyrl_gym.make``.
Ours: the two environments (parsing Hermes-style ``<tool_call>{...}</tool_call>`` actions, as SkyRL's
text environments parse their tags; ngym's tools and rewards, restated in ``seed.py``) and the driver —
skyrl-gym ships no rollout loop outside SkyRL-train's generator, so an asyncio loop here calls the model
with the ``openai`` SDK (``AsyncOpenAI``), renders its tool calls as the action text, steps the
environment, and runs N rollouts with at most ``--concurrency`` in flight.

    .venv-peers/bin/python bench/peer_envs/skyrl_gym_peer.py --base-url http://127.0.0.1:8321/v1 --rollouts 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from importlib.metadata import version
from typing import Any

from seed import ENVS, MULTI_STEP, WEATHER, Report, chat_messages, chat_tools, mix, reward, run_tool, seed_row

T0 = time.monotonic()
TOOL_CALL = re.compile(r"<tool_call>(.*?)</tool_call>", re.S)


def define_envs() -> None:
    import skyrl_gym
    from skyrl_gym.envs.base_text_env import BaseTextEnv, BaseTextEnvStepOutput
    from skyrl_gym.tools.core import ToolGroup, tool

    class WeatherTools(ToolGroup):
        def __init__(self) -> None:
            super().__init__(name="weather")

        @tool
        def get_weather(self, arguments: str) -> str:
            return run_tool("get_weather", arguments)

    class SynonymTools(ToolGroup):
        def __init__(self) -> None:
            super().__init__(name="synonyms")

        @tool
        def get_synonym_value(self, arguments: str) -> str:
            return run_tool("get_synonym_value", arguments)

        @tool
        def extract_synonym_values(self, arguments: str) -> str:
            return run_tool("extract_synonym_values", arguments)

    class SeedToolEnv(BaseTextEnv):
        """One rollout of a seed environment: tool calls until the model answers in text."""

        ENV = ""

        def __init__(self, env_config: Any = None, extras: dict[str, Any] | None = None) -> None:
            super().__init__()
            self.max_turns = 10
            self.expected = (extras or {}).get("expected_synonym_values")
            self.calls: list[tuple[str, str]] = []
            self.init_tool_groups([WeatherTools() if self.ENV == WEATHER else SynonymTools()])

        def step(self, action: str) -> BaseTextEnvStepOutput:
            self.turns += 1
            found = [json.loads(m) for m in TOOL_CALL.findall(action)]
            if not found or self.turns >= self.max_turns:
                r = reward(self.ENV, self.calls, self.expected)
                return BaseTextEnvStepOutput(observations=[], reward=r, done=True, metadata={"calls": len(self.calls)})
            observations = []
            for call in found:
                name, arguments = call["name"], json.dumps(call["arguments"])
                self.calls.append((name, arguments))
                if name in self.tool_to_toolgroup:
                    output = self._execute_tool(self.tool_to_toolgroup[name], name, [arguments])
                else:
                    output = json.dumps({"error": f"no tool {name}"})
                observations.append({"role": "tool", "content": output})
            return BaseTextEnvStepOutput(observations=observations, reward=0.0, done=False, metadata={})

    class WeatherEnv(SeedToolEnv):
        ENV = WEATHER

    class MultiStepEnv(SeedToolEnv):
        ENV = MULTI_STEP

    globals()["WeatherEnv"], globals()["MultiStepEnv"] = WeatherEnv, MultiStepEnv
    skyrl_gym.register(id=WEATHER, entry_point=f"{__name__}:WeatherEnv")
    skyrl_gym.register(id=MULTI_STEP, entry_point=f"{__name__}:MultiStepEnv")


def action_text(message: Any) -> str:
    """The assistant message as the text a model would have generated (Hermes tool-call tags)."""
    text = message.content or ""
    for call in message.tool_calls or []:
        text += "<tool_call>" + json.dumps(
            {"name": call.function.name, "arguments": json.loads(call.function.arguments)}
        ) + "</tool_call>"
    return text


async def rollout(client: Any, env_id: str, rows: dict[str, dict[str, Any]]) -> float:
    import skyrl_gym

    row = rows[env_id]
    env = skyrl_gym.make(env_id, extras={"expected_synonym_values": row.get("expected_synonym_values")})
    messages, _ = env.init(chat_messages(row))
    messages = list(messages)
    tools = chat_tools(row)
    try:
        while True:
            answer = await client.chat.completions.create(model="scripted", messages=messages, tools=tools)
            message = answer.choices[0].message
            out = env.step(action_text(message))
            if out["done"]:
                return float(out["reward"])
            messages.append(message.model_dump(exclude_none=True))
            for obs, call in zip(out["observations"], message.tool_calls or [], strict=False):
                messages.append({"role": "tool", "tool_call_id": call.id, "content": obs["content"]})
    finally:
        env.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--rollouts", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=256)
    args = parser.parse_args()
    from openai import AsyncOpenAI

    define_envs()
    report = Report("skyrl-gym", version("skyrl-gym"))
    rows = {env: seed_row(env) for env in ENVS}
    client = AsyncOpenAI(base_url=args.base_url, api_key="bench-key", max_retries=0, timeout=600)
    gate = asyncio.Semaphore(args.concurrency)

    async def one(env_id: str) -> None:
        async with gate:
            try:
                report.rewards[env_id].append(await rollout(client, env_id, rows))
            except Exception:  # noqa: BLE001 - a failed rollout is counted, not scored
                report.failures += 1

    report.ready()
    await asyncio.gather(*(one(env_id) for env_id in mix(args.rollouts)))
    report.done()
    report.emit(ready_s=round((report.t_ready or T0) - T0, 3))


if __name__ == "__main__":
    asyncio.run(main())
