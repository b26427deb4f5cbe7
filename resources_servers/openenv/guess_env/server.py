"""The guess environment's server: OpenEnv's ``create_app`` over :class:`GuessEnvironment`.

``python -m resources_servers.openenv.guess_env.server --port 8000`` from the repository root. The secret
comes from the reset's ``seed``; the reward is 1.0 on the step that finds it, else 0.0; the episode
ends when it is found or after seven guesses. ``--mcp`` serves an OpenEnv MCP-style environment
instead (actions ``list_tools``/``call_tool``), which ngym's OpenEnv adapter refuses.
"""

from __future__ import annotations

import argparse
import random
from typing import Any
from uuid import uuid4

from openenv.core.env_server import Environment, create_app
from openenv.core.env_server.mcp_types import CallToolAction, CallToolObservation

from resources_servers.openenv.guess_env.models import ATTEMPTS, HIGH, LOW, GuessAction, GuessObservation, GuessState


class GuessEnvironment(Environment[GuessAction, GuessObservation, GuessState]):
    SUPPORTS_CONCURRENT_SESSIONS = True

    def __init__(self) -> None:
        super().__init__()
        self._state = GuessState(episode_id=str(uuid4()))
        self._secret = LOW

    def reset(self, seed: int | None = None, episode_id: str | None = None, **kwargs: Any) -> GuessObservation:
        self._secret = random.Random(seed).randint(LOW, HIGH)
        self._state = GuessState(episode_id=episode_id or str(uuid4()))
        return GuessObservation(
            message=f"I am thinking of a number from {LOW} to {HIGH}. You have {ATTEMPTS} guesses.",
            attempts_left=ATTEMPTS, done=False, reward=0.0,
        )

    def step(self, action: GuessAction, timeout_s: float | None = None, **kwargs: Any) -> GuessObservation:
        state = self._state
        if state.won or state.attempts_left == 0:
            return GuessObservation(message="The game is over.", attempts_left=0, done=True, reward=0.0)
        state.step_count += 1
        state.attempts_left -= 1
        if action.guess == self._secret:
            state.won = True
            return GuessObservation(message=f"{action.guess} is right!", attempts_left=state.attempts_left, done=True, reward=1.0)
        hint = "higher" if action.guess < self._secret else "lower"
        over = state.attempts_left == 0
        message = f"{action.guess} is wrong: the number is {hint}." + (" No guesses left." if over else "")
        return GuessObservation(message=message, attempts_left=state.attempts_left, done=over, reward=0.0)

    @property
    def state(self) -> GuessState:
        return self._state


class ToolsOnlyEnvironment(Environment[CallToolAction, CallToolObservation, GuessState]):
    """An environment that takes MCP actions only (list_tools/call_tool)."""

    def reset(self, seed: int | None = None, episode_id: str | None = None, **kwargs: Any) -> CallToolObservation:
        return CallToolObservation(tool_name="", result=None, done=False)

    def step(self, action: CallToolAction, timeout_s: float | None = None, **kwargs: Any) -> CallToolObservation:
        return CallToolObservation(tool_name=action.tool_name, result="ok", done=True, reward=0.0)

    @property
    def state(self) -> GuessState:
        return GuessState()


app = create_app(GuessEnvironment, GuessAction, GuessObservation, env_name="guess", max_concurrent_envs=64)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--mcp", action="store_true", help="serve an MCP-style environment (refused by ngym's adapter)")
    args = parser.parse_args()
    import uvicorn

    served = create_app(ToolsOnlyEnvironment, CallToolAction, CallToolObservation, env_name="tools") if args.mcp else app
    uvicorn.run(served, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
