"""llm_judge: the reward comes from a judge model, itself a model server of the deployment (any of
ours: openai_model, vllm_model, local_model), grading the policy's answer with the rubric of the
config (or of the row). A judge that times out, fails or answers something unparseable is a typed
failure (``verifier_error``), never a reward of 0. ``rescore.py`` re-scores a rollouts file with
another judge or rubric without re-running the policy."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from ngym.config.schema import ServerRef
from ngym.env import EnvConfig, Environment, NoState, Verdict, VerifierError
from ngym.wire.responses import Response
from resources_servers.llm_judge.judging import (
    DEFAULT_RUBRIC,
    DEFAULT_SCORE_PATTERN,
    JudgeError,
    ask_judge,
    build_prompt,
    parse_verdict,
)


class LLMJudgeConfig(EnvConfig):
    #: the model server that judges (an instance of the deployment)
    judge_model_server: ServerRef
    #: extra fields of the judge's /v1/responses request (temperature, max_output_tokens, ...)
    judge_responses_create_params: dict[str, Any] = Field(default_factory=dict)
    #: the judge prompt: {question}, {response}, {reference}, {max_score} are filled in
    rubric: str = DEFAULT_RUBRIC
    #: the regex of the verdict in the judge's answer (group 1: the score)
    score_pattern: str = DEFAULT_SCORE_PATTERN
    max_score: int = Field(10, ge=1)
    judge_timeout_s: float = Field(120.0, gt=0)


class JudgeTask(BaseModel):
    """A row's task fields: the question, and optionally a reference answer and a rubric of its own."""

    question: str
    reference_answer: str | None = None
    rubric: str | None = None


class LLMJudgeResourcesServer(Environment[JudgeTask, NoState]):
    config: LLMJudgeConfig

    async def verify(self, response: Response) -> Verdict:
        task, cfg = self.task, self.config
        answer = response.output_text()
        if not answer.strip():  # nothing to judge: no judge call, no reward
            return Verdict(reward=0.0, judge_score=None, judge_skipped="empty response")
        prompt = build_prompt(
            task.rubric or cfg.rubric,
            question=task.question,
            response=answer,
            reference=task.reference_answer,
            max_score=cfg.max_score,
        )
        try:
            text = await ask_judge(
                self.server_client,
                cfg.judge_model_server.name,
                prompt,
                cfg.judge_responses_create_params,
                cfg.judge_timeout_s,
            )
            judgement = parse_verdict(text, cfg.score_pattern, cfg.max_score)
        except JudgeError as e:
            raise VerifierError(f"{cfg.name}: {e}", retryable=True) from None
        # metrics: the judge's score and its whole answer (why the reward is what it is)
        return Verdict(
            reward=judgement.reward,
            judge_score=judgement.score,
            judge_model_server=cfg.judge_model_server.name,
            judge_answer=judgement.text,
        )


if __name__ == "__main__":
    LLMJudgeResourcesServer.run_webserver()
