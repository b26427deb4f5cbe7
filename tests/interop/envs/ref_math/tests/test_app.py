# Reference style: `from app import`, bare `async def` tests (pytest-asyncio's auto mode), a
# MagicMock server client. Run by `ng_test +entrypoint=resources_servers/ref_math`.
from unittest.mock import AsyncMock, MagicMock

from app import RefMathConfig, RefMathServer, RefMathVerifyRequest

from nemo_gym.openai_utils import NeMoGymResponse
from nemo_gym.server_utils import ServerClient


def make_server(**overrides) -> RefMathServer:
    config = RefMathConfig(host="0.0.0.0", port=8080, entrypoint="", name="", **overrides)
    return RefMathServer(config=config, server_client=MagicMock(spec=ServerClient))


def request(text: str, expected: str) -> RefMathVerifyRequest:
    return RefMathVerifyRequest(
        responses_create_params={"input": "q"},
        response=NeMoGymResponse(
            id="r", created_at=0, model="m", object="response", parallel_tool_calls=True, tool_choice="auto", tools=[],
            output=[{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}]
        ),
        expected_answer=expected,
    )


async def test_right_and_wrong() -> None:
    server = make_server()
    assert (await server.verify(request("so 0.5", "1/2"))).reward == 1.0
    assert (await server.verify(request("so 0.6", "1/2"))).reward == 0.0


async def test_judge_is_called_through_the_server_client() -> None:
    server = make_server(use_judge=True, judge_model_server={"type": "responses_api_models", "name": "judge"})
    reply = MagicMock()
    reply.ok = True
    reply.read = AsyncMock(
        return_value=b'{"id": "j", "created_at": 0, "model": "judge", "object": "response", "parallel_tool_calls": true, '
        b'"tool_choice": "auto", "tools": [], "output": [{"type": "message", "role": "assistant", '
        b'"content": [{"type": "output_text", "text": "yes"}]}]}'
    )
    server.server_client.post = AsyncMock(return_value=reply)
    assert (await server.verify(request("7", "8"))).reward == 1.0
    assert server.server_client.post.call_args.kwargs["server_name"] == "judge"
