"""instruction_following: verifiable constraints in the style of IFEval / IFBench, checked by our
own code (:mod:`resources_servers.instruction_following.checkers`, 38 instruction ids), on the
reference's rows (``instruction_id_list``, ``kwargs``, ``grading_mode``: binary or fraction). The
verify response carries every instruction's result and what was counted. No tools; nothing is
downloaded at start (the reference fetches NLTK data and a spaCy model)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ngym.env import Environment, NoState, Verdict, VerifierError, run_blocking
from ngym.wire.responses import Response
from resources_servers.instruction_following.checkers import InstructionError
from resources_servers.instruction_following.grading import GradingMode, IFGrade, grade


class IFTask(BaseModel):
    """A row's task fields (the reference's; ``id`` and ``prompt`` are carried, not read)."""

    model_config = ConfigDict(populate_by_name=True)

    instruction_id_list: list[str]
    # the row's "kwargs" (a field named kwargs would shadow the model's own keyword arguments)
    instruction_kwargs: list[dict[str, Any] | None] = Field(alias="kwargs")
    grading_mode: GradingMode = "binary"


def final_text(response: Response) -> str:
    """The text of the last assistant message: the answer the instructions apply to."""
    messages = response.assistant_messages()
    return messages[-1].text() if messages else ""


class InstructionFollowingResourcesServer(Environment[IFTask, NoState]):
    async def verify(self, response: Response) -> Verdict:
        task = self.task
        try:  # language detection and regexes over a long answer: off the event loop
            result: IFGrade = await run_blocking(
                grade, final_text(response), task.instruction_id_list, task.instruction_kwargs, task.grading_mode
            )
        except InstructionError as e:  # a row we cannot check: the row's fault, never a silent 0
            raise VerifierError(f"instruction_following: {e}") from None
        # metrics: the reference's two, plus each instruction's detail (what was counted)
        return Verdict(
            reward=result.reward,
            follow_all_instructions=result.follow_all_instructions,
            follow_instruction_list=result.follow_instruction_list,
            instruction_details=result.details_json(),
        )


if __name__ == "__main__":
    InstructionFollowingResourcesServer.run_webserver()
