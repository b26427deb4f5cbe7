"""The server core's parts: transports against real servers, ngym's transport errors, the one
cookie parser, the failure vocabulary, the instance parser, the app loader, fast-path routes read
from endpoint signatures."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from fastapi import Body as BodyParam
from fastapi import FastAPI, Request
from fastapi.routing import APIRoute
from omegaconf import OmegaConf
from pydantic import BaseModel

from ngym import errors
from ngym.config.instance import InstanceShapeError, parse_instance, read_instance
from ngym.errors import ConfigError, FailureKind, NgymError, RolloutError, classify_failure
from ngym.server import local
from ngym.server.asgi import scope_for
from ngym.server.auth import TOKEN_ENV, TOKEN_HEADER
from ngym.server.client import ServerClient, with_retries
from ngym.server.fastpath import FastPathApp, FastPathSettings, fast_route
from ngym.server.http import parse_cookie_header, set_cookies
from ngym.server.loader import load_app
from ngym.server.transport import AiohttpTransport, HttpxTransport, LocalTransport, Reply

pytestmark = pytest.mark.anyio


# ---- the aiohttp transport against a real local server -----------------------------------------


@pytest.fixture
async def real_server() -> Any:
    """An aiohttp.web server on a free loopback port; records what each request carried."""
    seen: list[dict[str, Any]] = []

    async def echo(request: web.Request) -> web.Response:
        seen.append({"cookie": request.headers.get("cookie"), "token": request.headers.get(TOKEN_HEADER),
                     "type": request.headers.get("content-type"), "body": await request.read()})
        answer = web.json_response({"n": len(seen)}, status=201)
        answer.set_cookie("sess", f"s{len(seen)}", httponly=True, samesite="lax")
        answer.set_cookie("other", "x y", path="/")
        return answer

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(text="late")

    app = web.Application()
    app.router.add_post("/echo", echo)
    app.router.add_get("/slow", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", seen
    await runner.cleanup()


async def test_aiohttp_transport_sends_json_and_cookies_and_reads_set_cookie(real_server: Any) -> None:
    base, seen = real_server
    transport = AiohttpTransport()
    try:
        first = await transport.send("POST", base, "/echo", b'{"a":1}', {"sess": "abc", "k": "v"}, None)
        second = await transport.send("POST", base, "/echo", b"{}", None, 5.0)
    finally:
        await transport.aclose()
    assert (first.status_code, first.json(), first.url) == (201, {"n": 1}, base + "/echo")
    assert first.cookies == {"sess": "s1", "other": "x y"}
    assert seen[0]["cookie"] == "sess=abc; k=v" and seen[0]["type"] == "application/json" and seen[0]["body"] == b'{"a":1}'
    assert seen[1]["cookie"] is None  # nothing kept from the first answer: sessions never mix
    assert second.cookies["sess"] == "s2"


async def test_aiohttp_transport_carries_the_deployment_token(real_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    base, seen = real_server
    monkeypatch.setenv(TOKEN_ENV, "t0k")
    client = ServerClient({"echo": base})
    try:
        answer = await client.post("echo", "/echo", json={"x": 1})
    finally:
        await client.aclose()
    assert answer.status_code == 201 and seen[-1]["token"] == "t0k"


async def test_aiohttp_transport_timeout_is_ngym_read_timeout(real_server: Any) -> None:
    base, _ = real_server
    transport = AiohttpTransport()
    try:
        with pytest.raises(errors.ReadTimeout, match=r"no answer from http://127.0.0.1:\d+/slow") as caught:
            await transport.send("GET", base, "/slow", None, None, 0.2)
    finally:
        await transport.aclose()
    assert isinstance(caught.value, NgymError) and isinstance(caught.value, httpx.ReadTimeout)
    assert classify_failure(caught.value, FailureKind.MODEL_ERROR) == (FailureKind.TIMEOUT, True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_aiohttp_transport_refused_connection_is_ngym_connect_error() -> None:
    base = f"http://127.0.0.1:{_free_port()}"
    transport = AiohttpTransport()
    try:
        with pytest.raises(errors.ConnectError, match=base) as caught:
            await transport.send("POST", base, "/run", b"{}", None, None)
    finally:
        await transport.aclose()
    assert isinstance(caught.value, httpx.ConnectError)  # code catching httpx's errors keeps working
    assert classify_failure(caught.value, FailureKind.AGENT_CRASH) == (FailureKind.AGENT_UNREACHABLE, True)


async def test_aiohttp_transport_dropped_connection_is_remote_protocol_error() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    transport = AiohttpTransport()
    try:
        with pytest.raises(errors.RemoteProtocolError, match=base):
            await transport.send("GET", base, "/", None, None, 5.0)
    finally:
        await transport.aclose()
        server.close()


async def test_retries_go_on_after_a_refused_connection() -> None:
    calls = 0

    async def send() -> Reply:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise errors.ConnectError("http://x/: refused")
        return Reply(200, b"{}", "http://x/")

    assert (await with_retries(send, attempts=3, base_delay_s=0.001)).status_code == 200 and calls == 3


# ---- in-process and httpx transports -------------------------------------------------------------


async def test_local_transport_turns_a_broken_answer_into_remote_protocol_error() -> None:
    async def broken(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        raise RuntimeError("died mid-answer")

    local.register("http://127.0.0.1:40999", broken)
    try:
        with pytest.raises(errors.RemoteProtocolError, match="40999/x: RuntimeError: died mid-answer"):
            await LocalTransport().send("GET", "http://127.0.0.1:40999", "/x", None, None, None)
    finally:
        local.unregister("http://127.0.0.1:40999")
    with pytest.raises(errors.ConnectError, match="no server is hosted in this process"):
        await LocalTransport().send("GET", "http://127.0.0.1:40999", "/x", None, None, None)


async def test_httpx_transport_raises_ngym_errors() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    transport = HttpxTransport(httpx.AsyncClient(transport=httpx.MockTransport(refuse)))
    with pytest.raises(errors.ConnectError, match="http://a/b"):
        await transport.send("POST", "http://a", "/b", b"{}", None, None)
    await transport.aclose()


# ---- cookies, failure kinds, instances -----------------------------------------------------------


def test_one_cookie_parser_and_one_set_cookie_reader() -> None:
    assert parse_cookie_header(b'a=1; b="two"; junk; c=x=y') == {"a": "1", "b": "two", "c": "x=y"}
    assert parse_cookie_header("S___env=abc.def") == {"S___env": "abc.def"}
    assert parse_cookie_header(None) == {}
    headers = [(b"set-cookie", b"s=1; Path=/; HttpOnly"), (b"content-type", b"x"), (b"set-cookie", b'q="2"')]
    assert set_cookies(headers) == {"s": "1", "q": "2"}


def test_failure_kinds_are_one_vocabulary() -> None:
    assert RolloutError("m", kind="model_error").kind is FailureKind.MODEL_ERROR
    with pytest.raises(ValueError, match="'model_eror' is not a FailureKind"):
        RolloutError("m", kind="model_eror")
    assert FailureKind.parse("timeout") is FailureKind.TIMEOUT and FailureKind.parse("nope") is None
    assert {k for k in FailureKind if k.infrastructure} == {"model_error", "resources_error", "agent_unreachable", "timeout"}
    # answers from an agent's /run
    assert classify_failure(422, FailureKind.AGENT_CRASH) == (FailureKind.BAD_INPUT, False)
    assert classify_failure(500, FailureKind.AGENT_CRASH) == (FailureKind.AGENT_CRASH, False)
    assert classify_failure(503, FailureKind.AGENT_CRASH) == (FailureKind.AGENT_CRASH, True)
    # answers from the servers an agent calls
    assert classify_failure(500, FailureKind.VERIFIER_ERROR) == (FailureKind.VERIFIER_ERROR, True)
    assert classify_failure(400, FailureKind.MODEL_ERROR) == (FailureKind.MODEL_ERROR, False)
    assert classify_failure(429, FailureKind.RESOURCES_ERROR) == (FailureKind.RESOURCES_ERROR, True)
    assert classify_failure(TimeoutError(), FailureKind.AGENT_CRASH) == (FailureKind.TIMEOUT, True)
    assert classify_failure(errors.ConnectError("x"), FailureKind.RESOURCES_ERROR) == (FailureKind.RESOURCES_ERROR, True)
    assert classify_failure(ValueError("x"), FailureKind.AGENT_CRASH) == (FailureKind.AGENT_CRASH, False)


def test_llama_errors_are_ngym_errors() -> None:
    from ngym.models.llama import WeightsError
    from ngym.models.llama.engine import LlamaServerError

    assert issubclass(WeightsError, NgymError) and issubclass(LlamaServerError, NgymError)
    assert issubclass(LlamaServerError, RuntimeError)


def test_instance_parser_returns_a_typed_instance_with_resolved_settings() -> None:
    cfg = OmegaConf.create({
        "port_base": 9000,
        "env": {"resources_servers": {"my_env": {"entrypoint": "app.py", "port": "${port_base}", "domain": "math"}}},
        "broken": {"resources_servers": {"x": {"entrypoint": "app.py", "port": "${nowhere}"}}},
    })
    instance = parse_instance(cfg, "env")
    assert (instance.name, instance.server_type, instance.impl, instance.path) == (
        "env", "resources_servers", "my_env", "env -> resources_servers -> my_env")
    assert instance.settings == {"entrypoint": "app.py", "port": 9000, "domain": "math"}
    with pytest.raises(ConfigError, match=r"broken -> resources_servers -> x uses \$\{nowhere\}.*env.yaml"):
        parse_instance(cfg, "broken")
    with pytest.raises(ConfigError, match="'missing' is not in the deployment config"):
        parse_instance(cfg, "missing")
    assert read_instance("port_base", {"a": 1}) is None
    with pytest.raises(InstanceShapeError, match="exactly one implementation"):
        read_instance("two", {"resources_servers": {"a": {}, "b": {}}})


# ---- the app loader -----------------------------------------------------------------------------


APP = """
from __future__ import annotations
from pydantic import BaseModel
from sibling import VALUE
from ngym.env.resources import ResourcesServer
from ngym.config.schema import ServerConfig

class Settings(BaseModel):
    level: int = VALUE

class MyConfig(ServerConfig):
    extra: Settings = Settings()

class MyServer(ResourcesServer):
    config: MyConfig

if __name__ == "__main__":
    MyServer.run_webserver()
"""


def test_loader_runs_an_app_as_main_and_claims_its_server(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "sibling.py").write_text("VALUE = 7\n")
    loaded = load_app(tmp_path / "app.py")
    (cls,) = loaded.served
    assert cls.__name__ == "MyServer" and cls.__module__ == loaded.module.__name__ != "__main__"
    assert cls.config_type().__name__ == "MyConfig"  # type hints resolve after the load
    assert "sibling" not in __import__("sys").modules
    imported = load_app(tmp_path / "app.py", as_main=False)
    assert imported.served == [] and hasattr(imported.module, "MyServer")


# ---- fast-path routes from the endpoint's own signature ----------------------------------------


class In(BaseModel):
    x: int


def test_fast_routes_come_from_endpoint_signatures() -> None:
    app = FastAPI()

    @app.post("/optional")
    async def optional(body: In | None = None) -> dict[str, Any]:
        return {"got": body}

    @app.post("/embedded")
    async def embedded(body: In = BodyParam(embed=True)) -> dict[str, Any]:
        return {}

    @app.post("/two_bodies")
    async def two_bodies(a: In, b: In) -> dict[str, Any]:
        return {}

    @app.post("/request_only")
    async def request_only(request: Request) -> dict[str, Any]:
        return {}

    routes = {r.path: fast_route(r) for r in app.routes if isinstance(r, APIRoute)}
    assert routes["/optional"] is not None and routes["/optional"].body_required is False
    assert routes["/request_only"] is not None and routes["/request_only"].request_name == "request"
    assert routes["/embedded"] is None and routes["/two_bodies"] is None


async def test_fast_path_app_call_answers_in_process() -> None:
    app = FastAPI()

    @app.post("/double")
    async def double(body: In) -> dict[str, int]:
        return {"x": body.x * 2}

    fast = FastPathApp(app, FastPathSettings(server_name="s"))
    scope = scope_for("http://127.0.0.1:1", "POST", "/double", [(b"content-type", b"application/json")])
    assert await fast.call(scope, b'{"x": 4}', {}) == (200, b'{"x":8}', {})
    status, body, _ = await fast.call(dict(scope), b'{"x": "no"}', {})  # the full stack's own 422
    assert status == 422 and b"int_parsing" in body
    off = FastPathApp(app, FastPathSettings(server_name="s", enabled=False))
    assert off.fast.routes == {}
