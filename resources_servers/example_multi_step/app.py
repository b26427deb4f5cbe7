"""example_multi_step: look up the value of each synonym of the query's term, then extract them in order.

The reward is 1.0 iff the last ``extract_synonym_values`` call lists exactly the expected values in
the expected order. Extra metrics say how a wrong answer went wrong.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from pydantic import BaseModel

from ngym.env import Environment, NoState, Verdict, tool
from ngym.wire.responses import FunctionCall, Response


class MultiStepTask(BaseModel):
    """Task fields of a row."""

    id: int | None = None
    expected_synonym_values: list[int]
    expected_synonyms: list[str] = []
    minefield_label: str | None = None
    minefield_label_value: int | None = None


class GetSynonymValueResponse(BaseModel):
    synonym_value: int


class ExtractSynonymValuesResponse(BaseModel):
    success: bool


def synonym_value(synonym: str) -> int:
    """The value of a synonym: the sum of its characters' code points (Blazing -> 711)."""
    return sum(map(ord, synonym))


def last_extracted_values(output: Sequence[object]) -> list[int]:
    """Values of the last ``extract_synonym_values`` call, or ``[]`` (also for unparseable arguments)."""
    for item in reversed(output):
        if isinstance(item, FunctionCall) and item.name == "extract_synonym_values":
            try:
                values = json.loads(item.arguments).get("synonym_values", [])
            except (json.JSONDecodeError, AttributeError):
                return []
            return [v for v in values if isinstance(v, int)] if isinstance(values, list) else []
    return []


class MultiStepResourcesServer(Environment[MultiStepTask, NoState]):
    @tool
    async def get_synonym_value(self, synonym: str) -> GetSynonymValueResponse:
        """Get the value of a synonym. Returns {"synonym_value": <integer>}.

        Args:
            synonym: The synonym to get the value for.
        """
        return GetSynonymValueResponse(synonym_value=synonym_value(synonym))

    @tool
    async def extract_synonym_values(self, synonym_values: list[int]) -> ExtractSynonymValuesResponse:
        """Record the synonym values for the query's term. Returns {"success": <boolean>}.

        Args:
            synonym_values: The values of the term's synonyms, in order.
        """
        return ExtractSynonymValuesResponse(success=True)

    async def verify(self, response: Response) -> Verdict:
        actual = last_extracted_values(response.output)
        expected = self.task.expected_synonym_values
        accuracy = actual == expected
        overlap = len(set(actual) & set(expected)) / len(expected) if expected else float(not actual)
        minefield = self.task.minefield_label_value is not None and self.task.minefield_label_value in actual
        return Verdict(
            reward=float(accuracy),
            parsed_synonym_values=actual,
            accuracy=accuracy,
            set_overlap=overlap,
            original_term_minefield_hit=minefield,
            order_instruction_following_failure=(not accuracy) and overlap == 1.0,
        )


if __name__ == "__main__":
    MultiStepResourcesServer.run_webserver()
