"""mastermind: find a secret code with the ``guess`` tool; per-episode state, feedback each turn.

The row holds the puzzle's settings and seed (``puzzle``); the secret is derived from them here and
never sent to the model. Each ``guess`` is checked (length, letters, repeats, game not over; an
illegal move costs nothing but is counted) and answered with ``exact`` / ``misplaced`` pegs. The
episode's guesses live in its session state. Reward (``reward_mode``): ``outcome`` — 1.0 iff the
code was found within ``max_guesses``, from the state, whatever the final text says; ``shaped`` —
1.0 down to 0.5 for a win by guesses used, up to 0.4 for the best feedback of a loss. Both values
are in the verify response (``solved``, ``shaped_reward``), with the guesses and the secret.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from ngym.env import EnvConfig, Environment, ToolError, Verdict, tool
from ngym.wire.responses import Response
from resources_servers.mastermind.mastermind_rules import Game, Puzzle, illegal, normalize, secret_for, shaped_reward


class MastermindTask(BaseModel):
    puzzle: Puzzle


class MastermindConfig(EnvConfig):
    reward_mode: Literal["outcome", "shaped"] = "outcome"


class GuessResult(BaseModel):
    guess: str
    exact: int
    misplaced: int
    guesses_left: int
    solved: bool


class MastermindEnvironment(Environment[MastermindTask, Game]):
    config: MastermindConfig

    @tool
    async def guess(self, code: str) -> GuessResult:
        """Guess the secret code; the answer says how many letters are exact and how many misplaced.

        Args:
            code: The guess, e.g. "ABCD" (one letter per place).
        """
        puzzle, game = self.task.puzzle, self.state
        if game.over(puzzle):
            raise ToolError("the game is over: " + ("you found the code" if game.solved else "no guesses left"))
        attempt = normalize(code)
        problem = illegal(puzzle, attempt)
        if problem is not None:
            game.illegal_moves += 1
            raise ToolError(f"illegal guess: {problem}")
        exact, misplaced = game.play(puzzle, secret_for(puzzle), attempt)
        return GuessResult(guess=attempt, exact=exact, misplaced=misplaced,
                           guesses_left=puzzle.max_guesses - len(game.guesses), solved=game.solved)

    async def verify(self, response: Response) -> Verdict:
        puzzle, game = self.task.puzzle, self.state
        shaped = shaped_reward(puzzle, game)
        reward = shaped if self.config.reward_mode == "shaped" else float(game.solved)
        return Verdict(reward=reward, solved=game.solved, shaped_reward=round(shaped, 4),
                       guesses_used=len(game.guesses), illegal_moves=game.illegal_moves,
                       guesses=game.guesses, secret=secret_for(puzzle))


if __name__ == "__main__":
    MastermindEnvironment.run_webserver()
