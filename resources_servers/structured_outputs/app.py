"""structured_outputs: the response must be JSON valid against the row's JSON Schema (``schema_str``,
``schema_type: json``, the reference's fields), and hold the row's ``expected_values`` where it gives
them. No tools. The verifier is :mod:`resources_servers.structured_outputs.grading`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from ngym.env import EnvConfig, Environment, NoState, Verdict, VerifierError, run_blocking
from ngym.wire.responses import Response
from resources_servers.structured_outputs.grading import StructuredGrade, grade, load_schema


class StructuredOutputsConfig(EnvConfig):
    #: make every object schema require all its properties and forbid others (the reference does)
    strict_schema: bool = True
    #: also accept a response that is one fenced code block holding the JSON (the reference does not)
    allow_code_fence: bool = False


class StructuredTask(BaseModel):
    """A row's task fields: the reference's, plus our optional ``expected_values`` (JSON Pointer -> value)."""

    schema_str: str
    schema_type: Literal["json"] = "json"
    expected_values: dict[str, Any] | None = None


class StructuredOutputsResourcesServer(Environment[StructuredTask, NoState]):
    config: StructuredOutputsConfig

    def _grade(self, text: str) -> StructuredGrade:
        task = self.task
        schema = load_schema(task.schema_str, strict=self.config.strict_schema)
        return grade(text, schema, task.expected_values, allow_code_fence=self.config.allow_code_fence)

    async def verify(self, response: Response) -> Verdict:
        try:  # validation is CPU work proportional to the document: off the event loop
            result = await run_blocking(self._grade, response.output_text())
        except ValueError as e:  # the row's schema or expected_values are broken: not the policy's fault
            raise VerifierError(f"{self.config.name}: {e}") from None
        # metrics: JSON parsed, schema valid (first errors), expected values matched (and which differ)
        return Verdict(**result.to_dict())


if __name__ == "__main__":
    StructuredOutputsResourcesServer.run_webserver()
