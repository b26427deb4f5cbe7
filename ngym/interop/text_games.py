"""Gymnasium text environments and TextArena single-player games as an ngym resources server.

A row names the game and its seed (``game: "textarena:GuessTheNumber-v0"`` or
``"gymnasium:FrozenLake-v1"``, ``seed: 3``); ``/seed_session`` starts that game for the episode
(state per session), the model plays with the ``play`` tool (``{"action": "..."}`` → the new
observation, whether the game is over), and ``/verify`` gives the game's own reward: TextArena's
reward for player 0 at the end of the game, the sum of Gymnasium's step rewards. An episode the
model left unfinished scores what the game had given (TextArena: 0) with ``finished: false``.

What can be played: a game whose observations are text. TextArena games are text; a Gymnasium
environment must render as text (``render_mode="ansi"``, as FrozenLake, CliffWalking, Taxi,
Blackjack do) or have a ``Text`` observation space, and take a ``Discrete`` (an integer or a name
from the row's ``action_names``) or ``Text`` action. Anything else is refused when the episode
starts, naming what it has (:class:`UnsupportedGame`). Multi-player TextArena games are refused (the
other seats would need a policy).

``python -m ngym.interop.text_games rows GAME [GAME...] --seeds 0-4`` writes data rows whose prompt
holds each game's first observation.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from typing import Any, Protocol

from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field

from ngym.env.resources import ResourcesServer, ResourcesServerConfig
from ngym.wire.rows import SeedSessionRequest, VerifyRequest, VerifyResponse
from ngym.errors import FailureKind, InputError, RolloutError
from ngym.server.sessions import SessionStore, session_id


class UnsupportedGame(InputError):
    """A game that cannot be played as text (no text observation, an action space we cannot parse,
    several players, an unknown name)."""


class Game(Protocol):
    def reset(self) -> str: ...

    def step(self, action: str) -> tuple[str, bool]: ...

    def reward(self) -> float: ...


# ---- TextArena ---------------------------------------------------------------------------------


@dataclass
class TextArenaGame:
    """One single-player TextArena game. Observations are text; each step answers what is new."""

    env_id: str
    seed: int
    env: Any = None
    seen: str = ""
    done: bool = False
    rewards: dict[int, float] | None = None

    def reset(self) -> str:
        try:
            import textarena
        except ImportError:
            raise UnsupportedGame("textarena is not installed: pip install 'ngym[text-games]'") from None
        try:
            self.env = textarena.make(env_id=self.env_id)
        except Exception as e:  # noqa: BLE001 - textarena raises plain errors for unknown ids
            raise UnsupportedGame(f"TextArena game {self.env_id!r} cannot be made ({type(e).__name__}: {e})") from None
        try:
            self.env.reset(num_players=1, seed=self.seed)
        except Exception as e:  # noqa: BLE001 - a multi-player game refuses one player
            raise UnsupportedGame(
                f"{self.env_id} cannot be played by one player ({type(e).__name__}: {e}); only single-player "
                f"TextArena games are supported (the other seats would need a policy)"
            ) from None
        return self._new_text()

    def _new_text(self) -> str:
        _, observation = self.env.get_observation()
        text = observation if isinstance(observation, str) else json.dumps(observation, default=str)
        new = text[len(self.seen):] if text.startswith(self.seen) else text
        self.seen = text
        return new.strip()

    def step(self, action: str) -> tuple[str, bool]:
        if self.done:
            return "The game is over.", True
        self.done, _ = self.env.step(action=action)
        if self.done:
            self.rewards, info = self.env.close()
            reason = (info or {}).get(0, {}).get("reason", "") if isinstance(info, dict) else ""
            return f"The game is over. {reason}".strip(), True
        return self._new_text(), False

    def reward(self) -> float:
        return float((self.rewards or {}).get(0, 0.0))


# ---- Gymnasium -----------------------------------------------------------------------------------


@dataclass
class GymnasiumGame:
    """One Gymnasium environment played through its text rendering (or its ``Text`` observations)."""

    env_id: str
    seed: int
    action_names: dict[str, int] = field(default_factory=dict)
    max_steps: int = 100
    env: Any = None
    total: float = 0.0
    steps: int = 0
    done: bool = False

    def reset(self) -> str:
        try:
            import gymnasium
            from gymnasium import spaces
        except ImportError:
            raise UnsupportedGame("gymnasium is not installed: pip install 'ngym[text-games]'") from None
        try:
            spec = gymnasium.spec(self.env_id)
        except Exception as e:  # noqa: BLE001 - gymnasium's own error names close matches
            raise UnsupportedGame(f"Gymnasium has no environment {self.env_id!r} ({e})") from None
        modes = list((spec.kwargs or {}).get("render_modes", []))
        probe = gymnasium.make(self.env_id)
        modes = modes or list(probe.metadata.get("render_modes", []))
        text_obs = isinstance(probe.observation_space, spaces.Text)
        if not text_obs and "ansi" not in modes:
            probe.close()
            raise UnsupportedGame(
                f"{self.env_id} has no text observation: its observation space is {probe.observation_space} and it "
                f"renders as {', '.join(modes) or 'nothing'}, not 'ansi'. Only environments with Text observations or "
                f"an ansi (text) rendering can be played by a language model."
            )
        if not isinstance(probe.action_space, spaces.Discrete | spaces.Text):
            probe.close()
            raise UnsupportedGame(
                f"{self.env_id}'s action space is {probe.action_space}; only Discrete (an integer or a name) and Text "
                f"actions can be parsed from the model's words."
            )
        probe.close()
        self.env = gymnasium.make(self.env_id) if text_obs else gymnasium.make(self.env_id, render_mode="ansi")
        observation, _ = self.env.reset(seed=self.seed)
        return self._text(observation)

    def _text(self, observation: Any) -> str:
        if isinstance(observation, str):
            return observation
        return plain(str(self.env.render()).strip())

    def _action(self, action: str) -> Any:
        from gymnasium import spaces

        space = self.env.action_space
        if isinstance(space, spaces.Text):
            return action
        word = action.strip().strip("[]").strip().lower()
        if word in self.action_names:
            return self.action_names[word]
        if word.lstrip("-").isdigit() and space.contains(int(word)):
            return int(word)
        names = f" or one of {', '.join(self.action_names)}" if self.action_names else ""
        raise ValueError(f"invalid action {action!r}: answer an integer from {space.start} to {space.start + space.n - 1}{names}")

    def step(self, action: str) -> tuple[str, bool]:
        if self.done:
            return "The episode is over.", True
        try:
            chosen = self._action(action)
        except ValueError as e:
            return str(e), False
        observation, reward, terminated, truncated, _ = self.env.step(chosen)
        self.total += float(reward)
        self.steps += 1
        self.done = bool(terminated or truncated) or self.steps >= self.max_steps
        text = self._text(observation)
        return (f"{text}\nThe episode is over." if self.done else text), self.done

    def reward(self) -> float:
        return self.total


def plain(text: str) -> str:
    """Terminal colours out of a text rendering; a highlighted cell (where the agent is) as ``[X]``."""
    text = re.sub(r"\x1b\[4\dm(.*?)\x1b\[0m", r"[\1]", text)
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def make_game(name: str, seed: int, action_names: dict[str, int] | None = None, max_steps: int = 100) -> Game:
    """``textarena:<env id>`` or ``gymnasium:<env id>``."""
    family, _, env_id = name.partition(":")
    if family == "textarena" and env_id:
        return TextArenaGame(env_id, seed)
    if family == "gymnasium" and env_id:
        return GymnasiumGame(env_id, seed, dict(action_names or {}), max_steps)
    raise UnsupportedGame(f"game {name!r}: write 'textarena:<id>' (e.g. textarena:GuessTheNumber-v0) or 'gymnasium:<id>' (e.g. gymnasium:FrozenLake-v1)")


# ---- the server ------------------------------------------------------------------------------------


class TextGamesConfig(ResourcesServerConfig):
    #: seconds an idle episode's game is kept
    session_ttl_s: float = 3600.0


class GameTask(SeedSessionRequest):
    game: str
    seed: int = 0
    action_names: dict[str, int] = Field(default_factory=dict)
    max_steps: int = Field(100, ge=1)


class PlayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: str = Field(description="your move, as the game asks for it (e.g. [5], or 'left')")


class PlayResponse(BaseModel):
    observation: str
    done: bool


class GameVerifyRequest(VerifyRequest):
    game: str


class TextGamesServer(ResourcesServer):
    config: TextGamesConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.games: SessionStore[Game] = SessionStore(ttl_s=self.config.session_ttl_s)

    def setup_webserver(self) -> FastAPI:
        app = super().setup_webserver()
        app.post("/play")(self.play)
        return app

    async def seed_session(self, body: GameTask, request: Request) -> dict[str, str]:  # type: ignore[override]
        try:
            game = make_game(body.game, body.seed, body.action_names, body.max_steps)
            first = game.reset()
        except UnsupportedGame as e:
            raise RolloutError(str(e), kind=FailureKind.BAD_INPUT, status=400) from None
        self.games[session_id(request)] = game
        return {"observation": first}

    async def play(self, body: PlayRequest, request: Request) -> PlayResponse:
        game = self.games.get(session_id(request))
        if game is None:
            return PlayResponse(observation="No game is running in this episode.", done=True)
        observation, done = game.step(body.action)
        return PlayResponse(observation=observation, done=done)

    async def verify(self, body: GameVerifyRequest, request: Request) -> VerifyResponse:  # type: ignore[override]
        game = self.games.get(session_id(request))
        if game is None:
            raise RolloutError(
                f"{self.config.name}: no game for this episode (was /seed_session called with the row's game "
                f"{body.game!r}, and its cookie passed on?)", kind=FailureKind.VERIFIER_ERROR, status=500,
            )
        finished = bool(getattr(game, "done", False))
        return VerifyResponse.of(body, reward=game.reward(), finished=finished)


# ---- data rows ---------------------------------------------------------------------------------------

PROMPT = (
    "You are playing a game. Make one move per call of the `play` tool; it answers what happens. "
    "Keep playing until the game is over.\n\n{observation}"
)
PLAY_TOOL = {
    "type": "function",
    "name": "play",
    "description": "Make one move in the game.",
    "parameters": {
        "type": "object",
        "properties": {"action": {"type": "string", "description": "your move, as the game asks for it"}},
        "required": ["action"],
        "additionalProperties": False,
    },
    "strict": True,
}


def make_row(game: str, seed: int, agent: str, action_names: dict[str, int] | None = None) -> dict[str, Any]:
    first = make_game(game, seed, action_names).reset()
    row: dict[str, Any] = {
        "responses_create_params": {"input": [{"role": "user", "content": PROMPT.format(observation=first)}], "tools": [PLAY_TOOL]},
        "game": game,
        "seed": seed,
        "agent_ref": {"type": "responses_api_agents", "name": agent},
    }
    if action_names:
        row["action_names"] = action_names
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ngym.interop.text_games")
    sub = parser.add_subparsers(dest="command", required=True)
    rows = sub.add_parser("rows", help="data rows (JSONL on stdout) whose prompt holds each game's first observation")
    rows.add_argument("games", nargs="+")
    rows.add_argument("--seeds", default="0-4", help="e.g. 0-4 or 1,5,9")
    rows.add_argument("--agent", default="text_games_simple_agent")
    rows.add_argument("--action-names", default="", help='JSON, e.g. {"left": 0, "down": 1, "right": 2, "up": 3}')
    args = parser.parse_args(argv)
    lo, _, hi = args.seeds.partition("-")
    seeds = list(range(int(lo), int(hi) + 1)) if hi else [int(s) for s in args.seeds.split(",")]
    names = json.loads(args.action_names) if args.action_names else None
    try:
        for game in args.games:
            for seed in seeds:
                print(json.dumps(make_row(game, seed, args.agent, names)))
    except UnsupportedGame as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
