"""math_with_judge: free-form math answers (``\\boxed{}`` or a final-answer line) checked for
mathematical equivalence with ``expected_answer`` by ``math-verify`` (sympy underneath), in a worker
process so the event loop never waits on sympy and math-verify's own timeouts work. Optionally
(``should_use_judge``, off by default as in the reference's config) a judge model of the deployment
is asked when the library says "not equal" — twice, with the two answers in both orders; the reward
is 1 only if both say equal. A judge that fails or answers without a verdict is a typed failure.
The verifier is :mod:`resources_servers.math_with_judge.grading`."""

from __future__ import annotations

import re
import sys
from typing import Any

from pydantic import BaseModel, Field

from ngym.config.schema import ServerRef
from ngym.env import EnvConfig, Environment, NoState, Verdict, VerifierError, run_in_process
from ngym.errors import ConfigError
from ngym.wire.responses import Response
from resources_servers.llm_judge.judging import JudgeError, ask_judge, defuse
from resources_servers.math_with_judge import grading
from resources_servers.math_with_judge.grading import MathGrade, grade

EQUIVALENCE_PROMPT = """Decide whether two answers to a math problem are mathematically equivalent.

Problem:
{problem}

Answer A:
{first}

Answer B:
{second}

Equivalent means the same value or set of values (different forms such as 1/2 and 0.5 are equivalent).
End with exactly one label: [[A=B]] if they are equivalent, [[A!=B]] if they are not."""
_LABEL = re.compile(r"\[\[\s*A\s*(=|!=)\s*B\s*\]\]")


class MathConfig(EnvConfig):
    judge_model_server: ServerRef | None = None
    judge_responses_create_params: dict[str, Any] = Field(default_factory=dict)
    should_use_judge: bool = False
    judge_timeout_s: float = Field(120.0, gt=0)


class MathTask(BaseModel):
    """A row's task fields (the reference's)."""

    question: str | None = None
    expected_answer: str


async def grade_in_worker(text: str, expected_answer: str) -> MathGrade:
    """:func:`grade` in a worker process. ``grade`` travels by reference (module and name): a host
    that dropped this environment's modules from ``sys.modules`` after loading it (so that sibling
    modules of different environments do not shadow each other) would break that, so the module
    that defines it is put back first."""
    if sys.modules.get(grading.__name__) is not grading:
        sys.modules[grading.__name__] = grading
    return await run_in_process(grade, text, expected_answer)


def judge_label(text: str) -> bool:
    """``[[A=B]]`` -> True, ``[[A!=B]]`` -> False: the first label wins; none raises JudgeError."""
    m = _LABEL.search(text)
    if m is None:
        raise JudgeError(f"unparseable judge answer: no [[A=B]] / [[A!=B]] label in {text[-300:]!r}")
    return m.group(1) == "="


class MathWithJudgeResourcesServer(Environment[MathTask, NoState]):
    config: MathConfig

    async def setup(self) -> None:
        if self.config.should_use_judge and self.config.judge_model_server is None:
            raise ConfigError(f"{self.config.name}: should_use_judge is true and no judge_model_server is set; "
                              f"set judge_model_server: {{type: responses_api_models, name: <model instance>}}")
        await grade_in_worker("\\boxed{1}", "1")  # start the worker processes (imports sympy once)

    async def _judge(self, first: str, second: str) -> bool:
        cfg = self.config
        assert cfg.judge_model_server is not None
        prompt = EQUIVALENCE_PROMPT.format(problem=self.task.question or "(not given)", first=defuse(first), second=defuse(second))
        text = await ask_judge(self.server_client, cfg.judge_model_server.name, prompt,
                               cfg.judge_responses_create_params, cfg.judge_timeout_s)
        return judge_label(text)

    async def verify(self, response: Response) -> Verdict:
        try:
            result = await grade_in_worker(response.output_text(), self.task.expected_answer)
        except ValueError as e:
            raise VerifierError(f"{self.config.name}: {e}") from None
        reward = result.reward
        judged: list[bool] | None = None
        if self.config.should_use_judge and reward <= 0.5 and result.extracted_answer and not result.hedged:
            gold, answer = self.task.expected_answer, result.extracted_answer
            try:
                judged = [await self._judge(gold, answer), await self._judge(answer, gold)]
            except JudgeError as e:
                raise VerifierError(f"{self.config.name}: {e}", retryable=True) from None
            reward = 1.0 if all(judged) else 0.0
        # metrics: the answer read and where, math-verify's reward and reading, hedging, the judge's two verdicts
        return Verdict(
            reward=reward,
            expected_answer=self.task.expected_answer,
            extracted_answer=result.extracted_answer,
            answer_source=result.where,
            library_reward=result.reward,
            parsed_answer=result.parsed,
            hedged=result.hedged,
            no_reward_reason=result.reason,
            judge_evaluations=judged,
        )


if __name__ == "__main__":
    MathWithJudgeResourcesServer.run_webserver()
