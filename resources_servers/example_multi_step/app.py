"""example_multi_step: look up the value of each synonym of the query's term, then extract them in order.

The reward is 1.0 iff the last ``extract_synonym_values`` call lists exactly the expected values in
the expected order. Extra metrics say how a wrong answer went wrong.
"""

from __future__ import annotations

import json

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict

from ngym.env.resources import ResourcesServer, RunRequest, VerifyRequest, VerifyResponse
from ngym.wire.responses import FunctionCall


class GetSynonymValueRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    synonym: str


class GetSynonymValueResponse(BaseModel):
    synonym_value: int


class ExtractSynonymValuesRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    synonym_values: list[int]


class ExtractSynonymValuesResponse(BaseModel):
    success: bool


class MultiStepTask(BaseModel):
    """Task fields of a row."""

    id: int | None = None
    expected_synonym_values: list[int]
    expected_synonyms: list[str] = []
    minefield_label: str | None = None
    minefield_label_value: int | None = None


class MultiStepRunRequest(RunRequest, MultiStepTask):
    pass


class MultiStepVerifyRequest(VerifyRequest, MultiStepTask):
    pass


class MultiStepVerifyResponse(VerifyResponse):
    parsed_synonym_values: list[int]
    accuracy: bool
    set_overlap: float
    original_term_minefield_hit: bool
    order_instruction_following_failure: bool


def synonym_value(synonym: str) -> int:
    """The value of a synonym: the sum of its characters' code points (Blazing -> 711)."""
    return sum(map(ord, synonym))


def last_extracted_values(output: list[object]) -> list[int]:
    """Values of the last ``extract_synonym_values`` call, or ``[]`` (also for unparseable arguments)."""
    for item in reversed(output):
        if isinstance(item, FunctionCall) and item.name == "extract_synonym_values":
            try:
                values = json.loads(item.arguments).get("synonym_values", [])
            except (json.JSONDecodeError, AttributeError):
                return []
            return [v for v in values if isinstance(v, int)] if isinstance(values, list) else []
    return []


class MultiStepResourcesServer(ResourcesServer):
    def setup_webserver(self) -> FastAPI:
        app = super().setup_webserver()
        app.post("/get_synonym_value")(self.get_synonym_value)
        app.post("/extract_synonym_values")(self.extract_synonym_values)
        return app

    async def get_synonym_value(self, body: GetSynonymValueRequest) -> GetSynonymValueResponse:
        return GetSynonymValueResponse(synonym_value=synonym_value(body.synonym))

    async def extract_synonym_values(self, body: ExtractSynonymValuesRequest) -> ExtractSynonymValuesResponse:
        return ExtractSynonymValuesResponse(success=True)

    async def verify(self, body: MultiStepVerifyRequest) -> MultiStepVerifyResponse:
        actual = last_extracted_values(body.response.output)
        expected = body.expected_synonym_values
        accuracy = actual == expected
        overlap = len(set(actual) & set(expected)) / len(expected) if expected else float(not actual)
        minefield = body.minefield_label_value is not None and body.minefield_label_value in actual
        return MultiStepVerifyResponse.of(
            body,
            reward=float(accuracy),
            parsed_synonym_values=actual,
            accuracy=accuracy,
            set_overlap=overlap,
            original_term_minefield_hit=minefield,
            order_instruction_following_failure=(not accuracy) and overlap == 1.0,
        )


if __name__ == "__main__":
    MultiStepResourcesServer.run_webserver()
