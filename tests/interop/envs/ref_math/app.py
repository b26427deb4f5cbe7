"""A math environment written the way NeMo Gym v0.2.1's authors write them (not ngym's API):
pydantic-model server, a checker built in ``model_post_init`` and stored on an undeclared private
attribute, a broad ``except`` in verify, an optional judge called through ``server_client`` with
aiohttp-style replies. Used by tests/interop to check the ``nemo_gym`` shim."""

import re
from fractions import Fraction
from typing import Any, Optional

from fastapi import FastAPI
from pydantic import BaseModel, Field

from nemo_gym.base_resources_server import (
    BaseResourcesServerConfig,
    BaseRunRequest,
    BaseVerifyRequest,
    BaseVerifyResponse,
    SimpleResourcesServer,
)
from nemo_gym.config_types import ModelServerRef
from nemo_gym.openai_utils import NeMoGymEasyInputMessage, NeMoGymResponse, NeMoGymResponseCreateParamsNonStreaming
from nemo_gym.server_utils import get_response_json, raise_for_status


class RefMathConfig(BaseResourcesServerConfig):
    judge_model_server: Optional[ModelServerRef] = None
    use_judge: bool = False


class RefMathRunRequest(BaseRunRequest):
    expected_answer: str


class RefMathVerifyRequest(RefMathRunRequest, BaseVerifyRequest):
    pass


class RefMathVerifyResponse(BaseVerifyResponse):
    expected_answer: str
    extracted_answer: Optional[str] = None
    judge_said: Optional[str] = None


class Calls(BaseModel):
    count: int = 0


class RefMathServer(SimpleResourcesServer):
    config: RefMathConfig
    calls: Calls = Field(default_factory=Calls)
    seen: list = Field(default_factory=list)

    def model_post_init(self, context: Any) -> None:
        super().model_post_init(context)
        self._checker = NumberChecker()

    def setup_webserver(self) -> FastAPI:
        app = super().setup_webserver()
        app.post("/count_calls")(self.count_calls)
        return app

    async def count_calls(self) -> Calls:
        self.calls.count += 1
        return self.calls

    async def verify(self, body: RefMathVerifyRequest) -> RefMathVerifyResponse:
        text = body.response.output_text
        self.seen.append(text)
        judge_said = None
        try:
            extracted = self._checker.extract(text)
            reward = 1.0 if self._checker.same(extracted, body.expected_answer) else 0.0
        except Exception:  # the reference's habit: a checker failure scores 0
            extracted, reward = None, 0.0
        if self.config.use_judge and self.config.judge_model_server is not None:
            params = NeMoGymResponseCreateParamsNonStreaming(
                input=[NeMoGymEasyInputMessage(role="user", content=f"Is {text!r} equal to {body.expected_answer}?")]
            )
            resp = await self.server_client.post(
                server_name=self.config.judge_model_server.name, url_path="/v1/responses", json=params
            )
            await raise_for_status(resp)
            judged = NeMoGymResponse.model_validate(await get_response_json(resp))
            judge_said = judged.output_text
            reward = 1.0 if "yes" in judge_said.lower() else 0.0
        return RefMathVerifyResponse(
            **body.model_dump(), reward=reward, extracted_answer=extracted, judge_said=judge_said
        )


class NumberChecker:
    """The last number in the text, compared as an exact fraction ("0.5" == "1/2")."""

    NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:/\d+)?")

    def extract(self, text: str) -> Optional[str]:
        found = self.NUMBER.findall(text.replace(",", ""))
        return found[-1] if found else None

    def same(self, got: Optional[str], expected: str) -> bool:
        return got is not None and Fraction(got) == Fraction(expected)


if __name__ == "__main__":
    RefMathServer.run_webserver()
