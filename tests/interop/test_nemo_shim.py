"""The ``nemo_gym`` shim: environments written in NeMo Gym v0.2.1's style (tests/interop/envs, written
for these tests) served by ngym in-process, through their real routes."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import pytest
from fastapi import FastAPI
from pydantic import ConfigDict, ValidationError

from ngym.devkit.testing.asgi import RouterTransport
from ngym.server.client import Reply, make_http_client, response_cookies
from nemo_gym.base_resources_server import (
    BaseResourcesServerConfig,
    BaseVerifyRequest,
    BaseVerifyResponse,
    SimpleResourcesServer,
)
from nemo_gym.config_types import ModelServerRef
from nemo_gym.openai_utils import NeMoGymResponse, NeMoGymResponseOutputMessage, NeMoGymResponseOutputText
from nemo_gym.server_utils import AioReply, ServerClient, get_response_json, raise_for_status

pytestmark = pytest.mark.anyio

ENVS = Path(__file__).parent / "envs"


#: the fields the openai SDK's Response requires (so does the reference's NeMoGymResponse), but output
FULL = {"id": "resp_1", "created_at": 0.0, "model": "m", "object": "response", "parallel_tool_calls": True,
        "tool_choice": "auto", "tools": []}


def load_app(env: str) -> ModuleType:
    """Import ``envs/<env>/app.py`` under a unique module name (every environment's file is app.py)."""
    name = f"interop_{env}_app"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ENVS / env / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def rows(env: str, split: str = "example_rollouts") -> list[dict[str, Any]]:
    return [json.loads(line) for line in (ENVS / env / "data" / f"{split}.jsonl").read_text().splitlines()]


def deploy(servers: dict[str, Any]) -> ServerClient:
    """Every server gets a shim client that reaches the others in-process; the client is returned."""
    apps = {name: s if isinstance(s, FastAPI) else s.build_app() for name, s in servers.items()}
    client = ServerClient({name: f"http://{name}" for name in apps}, make_http_client(transport=RouterTransport(apps)))
    for server in servers.values():
        if not isinstance(server, FastAPI):
            server.server_client = client
    return client


def make(cls: type, **settings: Any) -> Any:
    config_type = cls.model_fields["config"].annotation
    config = config_type(host="127.0.0.1", port=0, entrypoint="app.py", name="env", **settings)
    return cls(config=config, server_client=ServerClient({}))


def judge_model(says: str) -> FastAPI:
    """A model server that answers every /v1/responses with one assistant message."""
    app = FastAPI()

    @app.post("/v1/responses")
    async def responses(body: dict[str, Any]) -> dict[str, Any]:
        text = says if "error" not in says else ""
        if says == "error":
            from fastapi import HTTPException

            raise HTTPException(503, "judge overloaded")
        return {**FULL, "output": [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}]}

    return app


# ---- pydantic-model servers ----------------------------------------------------------------------


def test_servers_behave_like_pydantic_models() -> None:
    app = load_app("ref_math")
    a, b = make(app.RefMathServer), make(app.RefMathServer)
    assert isinstance(a._checker, app.NumberChecker), "model_post_init ran"
    a.seen.append("x")
    a.calls.count = 3
    assert b.seen == [] and b.calls.count == 0, "Field(default_factory=...) gives each instance its own value"
    assert type(a).model_fields["config"].annotation is app.RefMathConfig
    with pytest.raises(TypeError):
        app.RefMathServer(a.config, a.server_client)  # keywords only, as a pydantic model
    with pytest.raises(ValidationError):
        app.RefMathServer(config=a.config)  # server_client is required


def test_config_domain_is_optional_and_refs_are_checked() -> None:
    app = load_app("ref_math")
    config = app.RefMathConfig(host="0.0.0.0", port=1, entrypoint="", name="", description="kept")
    assert config.domain is None
    assert app.RefMathConfig(
        host="h", port=1, entrypoint="", name="", judge_model_server={"type": "responses_api_models", "name": "j"}
    ).judge_model_server == ModelServerRef(type="responses_api_models", name="j")
    with pytest.raises(ValidationError, match="responses_api_models"):
        app.RefMathConfig(host="h", port=1, entrypoint="", name="", judge_model_server={"type": "x", "name": "j"})


def test_output_text_reads_as_property_and_as_method() -> None:
    response = NeMoGymResponse(
        **FULL,
        output=[
            {"type": "reasoning", "summary": [{"type": "summary_text", "text": "thinking"}]},
            NeMoGymResponseOutputMessage(
                id="m", role="assistant", status="completed", type="message",
                content=[NeMoGymResponseOutputText(text="4", annotations=[]), {"type": "output_text", "text": "2"}],
            ),
        ]
    )
    assert response.output_text == "42"
    assert response.output_text() == "42"
    assert isinstance(response.output[1], NeMoGymResponseOutputMessage)


def test_reference_defaults_and_openai_types_are_accepted() -> None:
    from openai.types.responses import FunctionTool as OpenAIFunctionTool

    message = NeMoGymResponseOutputMessage(id="m", content=[NeMoGymResponseOutputText(text="hi", annotations=[])])
    assert (message.role, message.status, message.type) == ("assistant", "completed", "message")
    tool = OpenAIFunctionTool(type="function", name="lookup", parameters={"type": "object", "properties": {}}, strict=True)
    built = NeMoGymResponse(
        id="r", created_at=1.0, model="m", object="response", output=[message], tools=[tool], parallel_tool_calls=False,
        tool_choice="auto",
    )
    assert built.tools[0].name == "lookup"
    parsed = NeMoGymResponse.model_validate_json(built.model_dump_json())
    assert parsed == built, "a response built from the reference's types equals the same response parsed"
    assert type(parsed.output[0]) is NeMoGymResponseOutputMessage


def test_a_response_missing_required_fields_is_refused_as_in_the_reference() -> None:
    with pytest.raises(ValidationError, match="Field required"):
        NeMoGymResponse.model_validate({})
    assert NeMoGymResponse.model_validate({**FULL, "output": []}).output == []


# ---- /verify ----------------------------------------------------------------------------------------


async def test_recorded_rollouts_reproduce_their_rewards() -> None:
    server = make(load_app("ref_math").RefMathServer)
    client = deploy({"env": server})
    recorded = rows("ref_math")
    assert {r["reward"] for r in recorded} == {0.0, 1.0}
    for row in recorded:  # the recorded row as is: it carries reward and extracted_answer already
        answer = await client.post("env", "/verify", json=row)
        assert answer.status == 200, await answer.text()
        got = await answer.json()
        assert got["reward"] == row["reward"]
        assert got["_ng_task_index"] == row["_ng_task_index"], "the row's undeclared keys are kept"
        assert got["agent_ref"] == row["agent_ref"]


async def test_a_stale_recorded_value_is_not_passed_off_as_computed() -> None:
    server = make(load_app("ref_math").RefMathServer)
    client = deploy({"env": server})
    row = {**rows("ref_math")[4], "extracted_answer": "3", "reward": 1.0}  # "no idea": nothing to extract
    got = await (await client.post("env", "/verify", json=row)).json()
    assert got["reward"] == 0.0
    assert "extracted_answer" not in got, "a response field the environment left empty is not refilled from the row"


async def test_verify_reading_an_attribute_never_set_is_a_verifier_error() -> None:
    app = load_app("ref_math")

    class Forgetful(app.RefMathServer):  # type: ignore[misc, name-defined]
        def model_post_init(self, context: Any) -> None:
            pass  # forgot super().model_post_init and the checker

    server = make(Forgetful)
    client = deploy({"env": server})
    for row in rows("ref_math"):
        answer = await client.post("env", "/verify", json=row)
        body = await answer.json()
        assert answer.status == 500, body
        assert body["kind"] == "verifier_error"
        assert "_checker" in body["error"] and "model_post_init" in body["error"]
    # the environment's own broad `except` would have answered reward 0 with 200:
    assert (await server.verify(app.RefMathVerifyRequest.model_validate(rows("ref_math")[0]))).reward == 0.0


async def test_probing_attributes_outside_verify_is_not_recorded() -> None:
    server = make(load_app("ref_math").RefMathServer)
    assert not hasattr(server, "nothing_here")
    client = deploy({"env": server})
    assert (await client.post("env", "/verify", json=rows("ref_math")[0])).status == 200


class OpenRequest(BaseVerifyRequest):
    model_config = ConfigDict(extra="allow")  # the request keeps unknown keys: `reward` too, unless dropped


class Scored(BaseVerifyResponse):
    verdict: str


class OpenEcho(SimpleResourcesServer):
    config: BaseResourcesServerConfig

    async def verify(self, body: OpenRequest) -> Scored:  # type: ignore[override]
        return Scored(**body.model_dump(), reward=0.25, verdict="fresh")


async def test_verify_response_from_model_dump_on_rows_with_extra_keys() -> None:
    class Echo(SimpleResourcesServer):
        config: BaseResourcesServerConfig

        async def verify(self, body: BaseVerifyRequest) -> BaseVerifyResponse:
            return BaseVerifyResponse(**body.model_dump(), reward=0.5)

    row = {"responses_create_params": {"input": "q"}, "response": {**FULL, "output": []}, "reward": 1.0, "task": 7, "verdict": "stale"}
    for server, reward in ((make(Echo), 0.5), (make(OpenEcho), 0.25)):
        client = deploy({"env": server})
        got = await (await client.post("env", "/verify", json=row)).json()
        assert got["reward"] == reward and got["task"] == 7
    assert got["verdict"] == "fresh"
    # a row that does not fit the environment's request model is a 422 naming the field
    answer = await client.post("env", "/verify", json={"response": {**FULL, "output": []}})
    assert answer.status == 422 and "responses_create_params" in await answer.text()


async def test_judge_through_the_server_client() -> None:
    app = load_app("ref_math")
    settings = {"use_judge": True, "judge_model_server": {"type": "responses_api_models", "name": "judge"}}
    row = rows("ref_math")[2]  # wrong by the checker (1,000 != 100)
    for says, reward in (("yes, equal", 1.0), ("no", 0.0)):
        client = deploy({"env": make(app.RefMathServer, **settings), "judge": judge_model(says)})
        got = await (await client.post("env", "/verify", json=row)).json()
        assert (got["reward"], got["judge_said"]) == (reward, says)
    client = deploy({"env": make(app.RefMathServer, **settings), "judge": judge_model("error")})
    answer = await client.post("env", "/verify", json=row)
    assert answer.status == 500 and "ClientResponseError" in (await answer.text()) and "503" in (await answer.text())


# ---- sessions and tools -------------------------------------------------------------------------------


async def test_stateful_environment_replays_its_recorded_episodes() -> None:
    server = make(load_app("ref_counter").CounterServer)
    client = deploy({"env": server})
    for row in rows("ref_counter"):
        seeded = await client.post("env", "/seed_session", json=row)
        cookies = seeded.cookies
        for item in row["response"]["output"]:
            if item["type"] == "function_call":
                tool = await client.post("env", f"/{item['name']}", json=json.loads(item["arguments"]), cookies=cookies)
                expected = next(o["output"] for o in row["response"]["output"] if o.get("call_id") == item["call_id"] and o["type"] == "function_call_output")
                assert await tool.json() == json.loads(expected)
        got = await (await client.post("env", "/verify", json=row, cookies=cookies)).json()
        assert got["reward"] == row["reward"]
    # without the episode's cookie the state is another session's
    assert (await (await client.post("env", "/verify", json=rows("ref_counter")[0])).json())["reward"] == 0.0
    assert len(server.session_id_to_counter) == len(rows("ref_counter"))


# ---- replies --------------------------------------------------------------------------------------------


async def test_replies_read_like_aiohttp_and_like_ngym() -> None:
    ok = AioReply(Reply(200, b'{"a": 1}', "http://x/y", {"c": "v"}))
    assert (ok.status, ok.status_code, ok.ok) == (200, 200, True)
    assert await ok.json() == {"a": 1} and await get_response_json(ok) == {"a": 1}
    assert await ok.read() == b'{"a": 1}' and await ok.content.read() == b'{"a": 1}' and ok.content == b'{"a": 1}'
    assert await ok.text() == '{"a": 1}'
    assert ok.cookies["c"].value == "v"
    ok.raise_for_status()
    await raise_for_status(ok)
    bad = AioReply(Reply(404, b"no such route", "http://x/y"))
    assert not bad.ok
    with pytest.raises(aiohttp.ClientResponseError) as caught:
        await raise_for_status(bad)
    assert caught.value.status == 404 and caught.value.response_content == b"no such route"  # type: ignore[attr-defined]


async def test_cookies_pass_on_as_aiohttp_gives_them() -> None:
    server = make(load_app("ref_counter").CounterServer)
    client = deploy({"env": server})
    seeded = await client.post("env", "/seed_session", json={"initial_count": 2})
    assert response_cookies(Reply(200, b"", "", {k: m.value for k, m in seeded.cookies.items()}))
    tool = await client.post("env", "/increment_counter", json={"count": 1}, cookies=seeded.cookies)  # a SimpleCookie
    assert await tool.json() == {"count": 3}


def test_reference_construction_of_the_client() -> None:
    from omegaconf import OmegaConf

    cfg = OmegaConf.create({"env": {"resources_servers": {"x": {"entrypoint": "app.py", "domain": "math", "host": "127.0.0.1", "port": 9}}}})
    client = ServerClient(head_server_config=None, global_config_dict=cfg)
    assert client.url_of("env") == "http://127.0.0.1:9"
    assert client.global_config_dict is cfg
