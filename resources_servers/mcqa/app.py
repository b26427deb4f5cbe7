"""mcqa: multiple-choice questions (4-10 options); the answer letter is read from the response in
the row's ``grading_mode`` (the reference's three, plus ``lenient``) and compared with
``expected_answer``. No tools. The verifier is :mod:`resources_servers.mcqa.grading`."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from ngym.env import Environment, NoState, Verdict
from ngym.wire.responses import Response
from resources_servers.mcqa.grading import GradingMode, grade


class MCQATask(BaseModel):
    """A row's task fields (the reference's; ``uuid`` and ``metadata`` are carried, not read)."""

    options: list[dict[str, str | None]] | None = None
    expected_answer: str
    grading_mode: GradingMode = "strict_single_letter_boxed"
    template_metadata: dict[str, Any] | None = None


class MCQAResourcesServer(Environment[MCQATask, NoState]):
    async def verify(self, response: Response) -> Verdict:
        task = self.task
        regex = (task.template_metadata or {}).get("output_regex")
        reward, found = grade(
            response.output_text(),
            task.options,
            task.expected_answer,
            task.grading_mode,
            regex if isinstance(regex, str) else None,
        )
        # metrics: the gold letter (upper case) and the letter read, how it was read, and a hedge's letters
        return Verdict(
            reward=reward,
            expected_answer=task.expected_answer.strip().upper(),
            extracted_answer=found.letter,
            extraction_rule=found.rule,
            hedged=found.hedged,
            hedged_letters=list(found.candidates) or None,
        )


if __name__ == "__main__":
    MCQAResourcesServer.run_webserver()
