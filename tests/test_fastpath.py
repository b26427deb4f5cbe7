"""The fast path answers as the full FastAPI stack does; in-process calls answer as HTTP does."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI, HTTPException, Request
from omegaconf import OmegaConf
from pydantic import BaseModel

from ngym.config.deployment import ServerSpec
from ngym.errors import DeploymentError, RolloutError
from ngym.env.resources import ResourcesServer, VerifyRequest, VerifyResponse
from ngym.server import local
from ngym.server.base import json_response
from ngym.server.client import ServerClient
from ngym.server.fastpath import FastPathApp
from ngym.server.host import PortDispatcher, load_server
from ngym.server.sessions import session_id
from resources_servers.example_multi_step.app import MultiStepResourcesServer
from resources_servers.example_session_state_mgmt.app import CounterResourcesServer
from responses_api_agents.simple_agent.app import SimpleAgent
from responses_api_models.scripted_model.app import ScriptedModel
from tests.fakes import make, ref

pytestmark = pytest.mark.anyio


class Body(BaseModel):
    x: int
    note: str | None = None


class Out(BaseModel):
    x: int
    note: str | None = None


class OutPlus(Out):
    hidden: str = "FastAPI's response model drops fields of a subclass"


def get_one() -> int:
    return 1


class Probe(ResourcesServer):
    """Routes of every shape the fast path must either answer exactly or leave to the full stack."""

    def setup_webserver(self) -> FastAPI:
        app = super().setup_webserver()

        @app.post("/model", response_model_exclude_none=True)
        async def model(body: Body) -> Out:
            return OutPlus(x=body.x * 2)

        @app.post("/plain")
        async def plain(body: dict[str, Any], request: Request) -> dict[str, Any]:
            return {"got": body, "session": session_id(request), "cookies": sorted(request.cookies)}

        @app.post("/raw")
        async def raw(body: Body) -> Any:
            out = json_response({"x": body.x})
            out.set_cookie("extra", "1")
            return out

        @app.post("/reads_body")
        async def reads_body(body: Body, request: Request) -> dict[str, Any]:
            return {"raw": await request.json(), "x": body.x}

        @app.post("/streamed")
        async def streamed(body: Body) -> Any:
            from starlette.responses import StreamingResponse

            async def parts():  # type: ignore[no-untyped-def]
                for i in range(body.x):
                    yield f"{i},".encode()

            return StreamingResponse(parts(), media_type="application/json")

        @app.post("/created", status_code=201)
        async def created(body: Body) -> dict[str, int]:
            return {"x": body.x}

        @app.post("/http_error")
        async def http_error(body: Body) -> None:
            raise HTTPException(418, "teapot")

        @app.post("/rollout_error")
        async def rollout_error(body: Body) -> None:
            raise RolloutError("the model is away", kind="model_error", retryable=True, status=503)

        @app.post("/boom")
        async def boom(body: Body) -> None:
            raise ValueError("boom")

        @app.post("/query")
        async def query(q: int, body: Body) -> dict[str, int]:
            return {"q": q, "x": body.x}

        @app.post("/dependency")
        async def dependency(body: Body, one: int = Depends(get_one)) -> dict[str, int]:
            return {"x": body.x + one}

        @app.post("/sync")
        def sync(body: Body) -> dict[str, int]:
            return {"x": body.x}

        return app

    async def verify(self, body: VerifyRequest) -> VerifyResponse:
        return VerifyResponse.of(body, reward=1.0)


def probe_app() -> FastPathApp:
    return make(Probe, "probe", domain="other").build_app()


def test_routes_the_fast_path_takes_and_leaves() -> None:
    routes = {path for _, path in probe_app().fast.routes}
    assert {"/model", "/plain", "/raw", "/reads_body", "/streamed", "/created", "/http_error", "/rollout_error", "/boom", "/verify", "/seed_session"} <= routes
    assert not routes & {"/query", "/dependency", "/sync"}


REQUESTS: list[tuple[str, Any]] = [
    ("/model", {"x": 2}),
    ("/model", {"x": "not a number"}),  # FastAPI's own 422
    ("/model", None),  # no body: 422
    ("/plain", {"a": [1, {"b": None}]}),
    ("/raw", {"x": 5}),
    ("/created", {"x": 1}),
    ("/reads_body", {"x": 3, "note": "n"}),
    ("/http_error", {"x": 1}),
    ("/rollout_error", {"x": 1}),
    ("/boom", {"x": 1}),
    ("/query?q=3", {"x": 1}),
    ("/dependency", {"x": 1}),
    ("/sync", {"x": 1}),
    ("/verify", {"responses_create_params": {"input": "hi"}, "response": {"id": "r1", "created_at": 1.0, "output": []}, "task": 7}),
    ("/seed_session", {"anything": 1}),
    ("/streamed", {"x": 3}),
]


@pytest.mark.parametrize(("path", "body"), REQUESTS, ids=[f"{p} {b!r}"[:40] for p, b in REQUESTS])
@pytest.mark.parametrize("cookie", ["none", "valid", "forged"])
@pytest.mark.parametrize("content_type", ["application/json", "text/plain"])
async def test_fast_path_answers_as_the_full_stack(path: str, body: Any, cookie: str, content_type: str) -> None:
    app = probe_app()
    cookie_name = app.fast.session.name if app.fast.session else ""
    answers = []
    for asgi in (app, app.app):  # the fast path in front, and FastAPI's stack alone
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url="http://probe") as http:
            cookies = {}
            if cookie == "valid":  # a session this deployment signed
                first = await http.post("/plain", json={})
                cookies = {cookie_name: first.cookies[cookie_name]}
            elif cookie == "forged":
                cookies = {cookie_name: "abc.def"}
            http.cookies.update(cookies)
            answer = await http.post(path, content=b"" if body is None else json.dumps(body),
                                     headers={"content-type": content_type})
        payload = answer.json() if not path.startswith("/streamed") else answer.text
        if isinstance(payload, dict):
            payload.pop("session", None)  # a fresh id each time
        answers.append((answer.status_code, payload, sorted(answer.cookies), answer.headers["content-type"]))
    assert answers[0] == answers[1]
    if path == "/verify" and content_type == "application/json":
        assert answers[0][1]["task"] == 7 and answers[0][1]["reward"] == 1.0
    if path == "/model" and content_type == "application/json":
        assert answers[0][0] == 422 or answers[0][1] == {"x": 4}


async def test_a_session_started_on_the_fast_path_is_kept_on_both_paths() -> None:
    app = probe_app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://probe") as http:
        first = (await http.post("/plain", json={})).json()["session"]
        again = (await http.post("/plain", json={})).json()["session"]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app.app), base_url="http://probe") as full:
        full.cookies.update(http.cookies)
        through_stack = (await full.post("/plain", json={})).json()["session"]
    assert first == again == through_stack


async def test_fast_path_keeps_the_deployment_token_on_non_loopback_servers(monkeypatch: pytest.MonkeyPatch) -> None:
    from ngym.server.auth import TOKEN_ENV, TOKEN_HEADER

    monkeypatch.setenv(TOKEN_ENV, "t0ken")
    app = make(Probe, "probe", domain="other", host="0.0.0.0").build_app()
    assert ("POST", "/model") in app.fast.routes
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://probe") as http:
        assert (await http.post("/model", json={"x": 1})).status_code == 401
        assert (await http.post("/model", json={"x": 1}, headers={TOKEN_HEADER: "wrong"})).status_code == 401
        ok = await http.post("/model", json={"x": 1}, headers={TOKEN_HEADER: "t0ken"})
        assert ok.status_code == 200 and ok.json() == {"x": 2}


# ---- in-process calls: ServerClient to a server registered in this process ---------------------


@pytest.fixture
def hosted() -> Any:
    """The multi-step environment, scripted model and an agent, registered as if hosted together."""
    servers = {
        "env": make(MultiStepResourcesServer, "env", domain="other"),
        "model": make(ScriptedModel, "model"),
        "agent": make(SimpleAgent, "agent", resources_server=ref("resources_servers", "env"),
                      model_server=ref("responses_api_models", "model")),
        "counter": make(CounterResourcesServer, "counter", domain="other"),
        "probe": make(Probe, "probe", domain="other"),
    }
    urls = {name: f"http://127.0.0.1:{40001 + i}" for i, name in enumerate(servers)}
    client = ServerClient(urls)
    for name, server in servers.items():
        server.server_client = client
        local.register(urls[name], server.build_app())
    yield client
    for url in urls.values():
        local.unregister(url)


async def test_in_process_rollout_without_sockets(hosted: ServerClient) -> None:
    row = json.loads(Path("resources_servers/example_multi_step/data/example.jsonl").read_text().splitlines()[0])
    answer = await hosted.post("agent", "/run", json=row)
    assert answer.status_code == 200, answer.text
    assert answer.json()["reward"] == 1.0
    assert answer.url == hosted.urls["agent"] + "/run"


async def test_in_process_calls_keep_sessions_apart(hosted: ServerClient) -> None:
    a = await hosted.post("counter", "/seed_session", json={"initial_count": 1, "expected_count": 3})
    b = await hosted.post("counter", "/seed_session", json={"initial_count": 10, "expected_count": 10})
    ca, cb = a.cookies, b.cookies
    assert ca and cb and ca != cb
    await hosted.post("counter", "/increment_counter", json={"count": 2}, cookies=ca)
    assert (await hosted.post("counter", "/get_counter_value", cookies=ca)).json() == {"count": 3}
    assert (await hosted.post("counter", "/get_counter_value", cookies=cb)).json() == {"count": 10}


async def test_in_process_errors_and_fallbacks_answer_as_over_http(hosted: ServerClient) -> None:
    bad = await hosted.post("probe", "/model", json={"x": "nope"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "x"]
    failed = await hosted.post("probe", "/rollout_error", json={"x": 1})
    assert failed.status_code == 503 and failed.json()["kind"] == "model_error" and failed.json()["server"] == "probe"
    assert (await hosted.post("probe", "/query?q=4", json={"x": 1})).json() == {"q": 4, "x": 1}
    assert (await hosted.get("probe", "/")).json()["name"] == "probe"
    raw = await hosted.post("probe", "/raw", json={"x": 1})
    assert raw.cookies["extra"] == "1"
    assert (await hosted.post("probe", "/reads_body", json={"x": 2})).json() == {"raw": {"x": 2}, "x": 2}
    streamed = await hosted.post("probe", "/streamed", json={"x": 3})
    assert streamed.status_code == 200 and streamed.text == "0,1,2,"


async def test_in_process_call_times_out(hosted: ServerClient) -> None:
    never = asyncio.Event()

    async def stuck(*args: Any, **kwargs: Any) -> None:
        await never.wait()

    server_app = local.app_for(hosted.urls["model"])
    route = server_app.fast.routes[("POST", "/v1/responses")]
    route.endpoint = stuck
    with pytest.raises(httpx.ReadTimeout, match="/v1/responses"):
        await hosted.post("model", "/v1/responses", json={"input": "hi"}, timeout=0.2)


# ---- the host process's parts ------------------------------------------------------------------


async def test_port_dispatcher_runs_every_lifespan_and_routes_by_port() -> None:
    events: list[str] = []

    def app_with_lifespan(name: str) -> FastAPI:
        from contextlib import asynccontextmanager

        @asynccontextmanager
        async def lifespan(app: FastAPI):  # type: ignore[no-untyped-def]
            events.append(f"{name} up")
            yield
            events.append(f"{name} down")

        app = FastAPI(lifespan=lifespan)

        @app.get("/")
        async def who() -> str:
            return name

        return app

    dispatcher = PortDispatcher({1: app_with_lifespan("a"), 2: app_with_lifespan("b")})
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    task = asyncio.ensure_future(dispatcher({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, outbox.put))
    await inbox.put({"type": "lifespan.startup"})
    assert (await outbox.get())["type"] == "lifespan.startup.complete"
    assert events == ["a up", "b up"]
    for port, name in ((1, "a"), (2, "b")):
        scope = local.scope_for(f"http://127.0.0.1:{port}", "GET", "/", [])
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b""}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await dispatcher(scope, receive, send)
        assert json.loads(sent[-1]["body"]) == name
    await inbox.put({"type": "lifespan.shutdown"})
    assert (await outbox.get())["type"] == "lifespan.shutdown.complete"
    await task
    assert events == ["a up", "b up", "b down", "a down"]


def _spec(directory: Path, name: str) -> ServerSpec:
    return ServerSpec(name=name, type="resources_servers", impl=directory.name, entrypoint="app.py",
                      host="127.0.0.1", port=1, dir=directory)


SERVER_MODULE = """
from helper import WORD
from ngym.env.resources import ResourcesServer

class {cls}(ResourcesServer):
    word = WORD

if __name__ == "__main__":
    {cls}.run_webserver()
"""


def test_load_server_runs_each_entrypoint_with_its_own_sibling_modules(tmp_path: Path) -> None:
    specs = []
    for name, word in (("one", "first"), ("two", "second")):
        directory = tmp_path / name
        directory.mkdir()
        (directory / "app.py").write_text(SERVER_MODULE.format(cls=f"Server{name.title()}"))
        (directory / "helper.py").write_text(f"WORD = {word!r}\n")
        specs.append(_spec(directory, name))
    cfg = OmegaConf.create({
        spec.name: {"resources_servers": {spec.dir.name: {"entrypoint": "app.py", "domain": "other", "host": "127.0.0.1", "port": 100 + i}}}
        for i, spec in enumerate(specs)
    })
    one, two = (load_server(spec, cfg) for spec in specs)
    assert (type(one).__name__, one.word, one.config.name) == ("ServerOne", "first", "one")  # type: ignore[attr-defined]
    assert (type(two).__name__, two.word, two.config.name) == ("ServerTwo", "second", "two")  # type: ignore[attr-defined]


def test_load_server_explains_an_entrypoint_that_cannot_be_hosted(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("import uvicorn  # serves itself, never calls run_webserver()\n")
    with pytest.raises(DeploymentError, match=r"did not call <YourServer>.run_webserver\(\).*colocate"):
        load_server(_spec(tmp_path, "custom"), OmegaConf.create({}))


async def test_hosted_servers_answer_over_http_and_in_process_in_one_loop() -> None:
    from ngym.config import ParserConfig, build_deployment, load_config
    from ngym.server.host import HostedServers

    configs = ["responses_api_models/scripted_model/configs/scripted_model.yaml",
               "resources_servers/example_multi_step/configs/example_multi_step.yaml"]
    cfg = load_config(ParserConfig(cli_args=[f"+config_paths=[{','.join(configs)}]", "+colocate=true"]))
    deployment = build_deployment(cfg)
    async with HostedServers(deployment.config, deployment.colocated):
        async with httpx.AsyncClient() as http:  # a real socket to each server
            for spec in deployment.servers.values():
                assert (await http.get(spec.url + "/")).json()["name"] == spec.name
        client = ServerClient.from_config(deployment.config)
        row = json.loads(Path("resources_servers/example_multi_step/data/example.jsonl").read_text().splitlines()[0])
        answer = await client.post("example_multi_step_simple_agent", "/run", json=row)  # no socket
        assert answer.status_code == 200 and answer.json()["reward"] == 1.0
    assert all(local.app_for(spec.url) is None for spec in deployment.servers.values())
    with pytest.raises(httpx.ConnectError):
        httpx.get(next(iter(deployment.servers.values())).url + "/")
