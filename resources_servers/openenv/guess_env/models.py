"""The guess environment's action, observation and state, as OpenEnv environments declare them."""

from __future__ import annotations

from openenv.core.env_server.types import Action, Observation, State
from pydantic import Field

LOW, HIGH, ATTEMPTS = 1, 100, 7


class GuessAction(Action):
    """One guess of the secret number."""

    guess: int = Field(..., description=f"your guess, an integer from {LOW} to {HIGH}")


class GuessObservation(Observation):
    """What the player is told: whether the guess is too low, too high or right, and what is left."""

    message: str = Field(default="", description="the answer to the last guess")
    attempts_left: int = Field(default=ATTEMPTS, description="guesses left")


class GuessState(State):
    attempts_left: int = ATTEMPTS
    won: bool = False
