"""brevity: answer a question in at most ``max_words`` words. No tools.

The reward is smooth so that a small model gets a signal from the start: ``min(1, max_words / n)``
for an answer of ``n`` words (1.0 when short enough), 0.0 for no answer. An episode cut off by the
token limit (``incomplete_details``) counts all the words it produced. A 135M model mostly rambles
at first, sometimes answers briefly: the reward varies within a group, which GRPO needs, and it
rises as the policy learns to stop (docs/training.md).
"""

from __future__ import annotations

import re

from pydantic import BaseModel, Field

from ngym.env import Environment, NoState, Verdict
from ngym.wire.responses import Response

_WORD = re.compile(r"[\w'’-]+", re.UNICODE)


def count_words(text: str) -> int:
    return len(_WORD.findall(text))


def brevity_reward(words: int, max_words: int) -> float:
    if words <= 0:
        return 0.0
    return min(1.0, max_words / words)


class BrevityTask(BaseModel):
    """A row's task field."""

    max_words: int = Field(ge=1)


class BrevityResourcesServer(Environment[BrevityTask, NoState]):
    async def verify(self, response: Response) -> Verdict:
        words = count_words(response.output_text())
        reward = brevity_reward(words, self.task.max_words)
        # metrics: the words in the final answer; whether it is within max_words (reward 1.0)
        return Verdict(reward=reward, words=words, within_limit=0 < words <= self.task.max_words)


if __name__ == "__main__":
    BrevityResourcesServer.run_webserver()
