"""reasoning_gym: any task of the reasoning-gym package, scored by the package's own scorer.

Rows are the reference's: ``question``, ``answer``, ``metadata`` (with ``source_dataset``, the task's
name). The answer is the last ``<answer>...</answer>`` of the final text, else its last ``\\boxed{}``.
Reward (``reward_mode``): ``binary`` (default) — 1.0 iff the package's score is full (1.0), so the
partial credit some scorers give a near-miss or a sprayed answer ("-1769 or -1770" scores 0.36 on
basic_arithmetic) is not rewarded; ``score`` — the package's score as is (the reference's reward).
The raw score is always in ``score``. Unlike the
reference, a response with neither is scored 0.0 without asking the scorer (the reference passes the
whole text, which lets an answer-spraying text collect partial credit); ``fallback_to_full_text``
restores the reference's behaviour. An unknown task is a verifier error, never a silent 0; a scorer
that raises on a malformed answer gives 0.0 with the error in ``scorer_error``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ngym.env import EnvConfig, Environment, NoState, Verdict, VerifierError, run_blocking
from ngym.wire.responses import Response
from resources_servers.reasoning_gym.rg_tasks import extract, scorer, scoring_entry


class Metadata(BaseModel):
    model_config = ConfigDict(extra="allow")

    source_dataset: str = Field(description="the reasoning-gym task name")


class ReasoningGymTask(BaseModel):
    question: str
    answer: str | None = None
    metadata: Metadata


class ReasoningGymConfig(EnvConfig):
    fallback_to_full_text: bool = False
    reward_mode: Literal["binary", "score"] = "binary"


def _score(task: str, answer: str, entry: dict[str, Any]) -> float:
    return float(scorer(task)(answer=answer, entry=scoring_entry(task, entry)))


class ReasoningGymEnvironment(Environment[ReasoningGymTask, NoState]):
    config: ReasoningGymConfig

    async def verify(self, response: Response) -> Verdict:
        name = self.task.metadata.source_dataset
        text = response.output_text()
        answer = extract(text, self.config.fallback_to_full_text)
        if answer is None:
            return Verdict(reward=0.0, task_name=name, score=0.0, extracted_answer=None)
        entry = {"question": self.task.question, "answer": self.task.answer,
                 "metadata": self.task.metadata.model_dump()}
        try:
            scorer(name)
        except KeyError as e:
            raise VerifierError(f"{self.config.name}: {e.args[0]}. Fix metadata.source_dataset of the row.") from None
        try:
            score = await run_blocking(_score, name, answer, entry)
        except Exception as e:  # noqa: BLE001 - the package's scorer choking on the model's answer
            return Verdict(reward=0.0, task_name=name, score=0.0, extracted_answer=answer,
                           scorer_error=f"{type(e).__name__}: {e}"[:500])
        reward = score if self.config.reward_mode == "score" else float(score >= 1.0)
        return Verdict(reward=reward, task_name=name, score=score, extracted_answer=answer)


if __name__ == "__main__":
    ReasoningGymEnvironment.run_webserver()
