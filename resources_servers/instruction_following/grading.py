"""instruction_following's reward: run every instruction's checker on the response and combine,
``binary`` (all followed: 1.0) or ``fraction`` (the share followed), as the reference's rows say."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from resources_servers.instruction_following.checkers import InstructionError, check

GradingMode = Literal["binary", "fraction"]


@dataclass(frozen=True, slots=True)
class InstructionResult:
    instruction_id: str
    followed: bool
    detail: str


@dataclass(frozen=True, slots=True)
class IFGrade:
    reward: float
    follow_all_instructions: bool
    follow_instruction_list: list[bool]
    details: list[InstructionResult]

    def details_json(self) -> list[dict[str, Any]]:
        return [asdict(d) for d in self.details]


def grade(
    text: str,
    instruction_id_list: list[str],
    kwargs: list[dict[str, Any] | None],
    mode: GradingMode = "binary",
) -> IFGrade:
    """Check every instruction (raises :class:`InstructionError` for rows it cannot check)."""
    if len(kwargs) != len(instruction_id_list):
        raise InstructionError(
            f"instruction_id_list has {len(instruction_id_list)} ids and kwargs {len(kwargs)} entries; they must pair up"
        )
    if not instruction_id_list:
        raise InstructionError("instruction_id_list is empty: there is nothing to check")
    details = []
    for instruction_id, args in zip(instruction_id_list, kwargs, strict=True):
        followed, detail = check(instruction_id, text, args)  # checks the arguments even for an empty response
        if not text.strip():  # "no commas" and the like hold for an empty text: it follows nothing
            followed, detail = False, "empty response"
        details.append(InstructionResult(instruction_id, followed, detail))
    flags = [d.followed for d in details]
    reward = float(all(flags)) if mode == "binary" else sum(flags) / len(flags)
    return IFGrade(reward, all(flags), flags, details)
