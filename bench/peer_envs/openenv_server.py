"""The seed mix as an OpenEnv environment server (``openenv-core``): ``Environment`` with ``reset`` /
``step``, pydantic ``Action`` / ``Observation``, served by ``create_app`` (FastAPI, a WebSocket session
per client). Written as OpenEnv's own template (``openenv init``) writes one; the tools and rewards are
ngym's, restated in ``seed.py``. Started by ``openenv_peer.py``:

    .venv-peers/bin/python bench/peer_envs/openenv_server.py --port 8000 --max-sessions 256
"""

from __future__ import annotations

import argparse
import os
from typing import Any, Optional
from uuid import uuid4

from openenv.core.env_server.http_server import create_app
from openenv.core.env_server.interfaces import Environment
from openenv.core.env_server.types import Action, Observation, State
from pydantic import Field

from seed import ENVS, reward, run_tool


class SeedAction(Action):
    """The model's turn: its tool calls (name, JSON arguments), or its final message."""

    tool_calls: list[dict[str, str]] = Field(default_factory=list)
    message: Optional[str] = None


class SeedObservation(Observation):
    """The tools' outputs, in the order of the calls."""

    env: str = ""
    tool_outputs: list[str] = Field(default_factory=list)


class SeedEnvironment(Environment):
    """One rollout of a seed environment (``reset(env=..., expected_synonym_values=...)``)."""

    SUPPORTS_CONCURRENT_SESSIONS: bool = True

    def __init__(self) -> None:
        self._state = State(episode_id=str(uuid4()), step_count=0)
        self.env = ENVS[0]
        self.expected: list[int] | None = None
        self.calls: list[tuple[str, str]] = []

    def reset(
        self,
        seed: Optional[int] = None,
        episode_id: Optional[str] = None,
        env: str = ENVS[0],
        expected_synonym_values: Optional[list[int]] = None,
        **kwargs: Any,
    ) -> SeedObservation:
        if env not in ENVS:
            raise ValueError(f"unknown environment {env!r}; one of {ENVS}")
        self._state = State(episode_id=episode_id or str(uuid4()), step_count=0)
        self.env, self.expected, self.calls = env, expected_synonym_values, []
        return SeedObservation(env=env, done=False, reward=0.0)

    def step(self, action: SeedAction, timeout_s: Optional[float] = None, **kwargs: Any) -> SeedObservation:  # type: ignore[override]
        self._state.step_count += 1
        if not action.tool_calls:
            return SeedObservation(env=self.env, done=True, reward=reward(self.env, self.calls, self.expected))
        outputs = []
        for call in action.tool_calls:
            self.calls.append((call["name"], call["arguments"]))
            outputs.append(run_tool(call["name"], call["arguments"]))
        return SeedObservation(env=self.env, tool_outputs=outputs, done=False, reward=0.0)

    @property
    def state(self) -> State:
        return self._state


app = create_app(
    SeedEnvironment,
    SeedAction,
    SeedObservation,
    env_name="ngym_seed_mix",
    max_concurrent_envs=int(os.environ.get("SEED_MAX_SESSIONS", "256")),
)


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", ws_max_queue=64)


if __name__ == "__main__":
    main()
