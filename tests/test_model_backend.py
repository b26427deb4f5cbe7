"""The model servers' upstream client (``ngym.models.backend.Backend``) over real sockets: a real
HTTP server on 127.0.0.1 in the test's event loop, and raw sockets for the failures."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from aiohttp import web

from ngym.errors import ConfigError, RolloutError
from ngym.models.backend import Backend
from ngym.server.auth import TOKEN_ENV, TOKEN_HEADER
from ngym.server.client import ServerClient
from responses_api_models.openai_model.app import OpenAIModel, OpenAIModelConfig

pytestmark = pytest.mark.anyio

SECRET = "sk-test-5f1c9e0b7d2a4c6e8f0a1b3c5d7e9f00"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[str]:
    """A real HTTP server on a free port answering every path with ``handler``; yields its /v1 URL."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_posts_json_with_the_key_and_without_the_deployment_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, "deployment-token")
    seen: list[dict[str, Any]] = []

    async def echo(request: web.Request) -> web.Response:
        seen.append({"path": request.path, "headers": dict(request.headers), "body": await request.json() if request.can_read_body else None})
        return web.json_response({"ok": True, "n": len(seen)})

    async with serve(echo) as url:
        backend = Backend(url, SECRET, timeout_s=5)
        assert await backend.post_json(f"{url}/chat/completions", {"messages": [], "x": 1}) == {"ok": True, "n": 1}
        assert await backend.get_json(f"{backend.root}/props") == {"ok": True, "n": 2}
        await backend.aclose()
    assert [s["path"] for s in seen] == ["/v1/chat/completions", "/props"]
    assert seen[0]["body"] == {"messages": [], "x": 1}
    headers = seen[0]["headers"]
    assert headers["Authorization"] == f"Bearer {SECRET}" and headers["Content-Type"] == "application/json"
    assert TOKEN_HEADER not in {k.lower() for k in headers}


async def test_no_key_no_authorization_header() -> None:
    seen: list[dict[str, str]] = []

    async def echo(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.json_response({})

    async with serve(echo) as url:
        backend = Backend(url)
        await backend.post_json(f"{url}/x", {})
        await backend.aclose()
    assert "Authorization" not in seen[0]


async def test_a_slow_backend_is_a_retryable_timeout_naming_the_url() -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.json_response({})

    async with serve(slow) as url:
        backend = Backend(url, SECRET, timeout_s=0.3)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(RolloutError) as caught:
            await backend.post_json(f"{url}/chat/completions", {})
        took = loop.time() - started
        await backend.aclose()
    error = caught.value
    assert (error.kind, error.retryable, error.status) == ("timeout", True, 504)
    assert f"{url}/chat/completions did not answer in time" in str(error) and "timeout_s=0.3" in str(error)
    assert took < 4  # the 0.3 s bound held, not the server's 5 s


async def test_a_connect_that_never_completes_is_a_timeout() -> None:
    # 192.0.2.0/24 is TEST-NET-1: never routed, so the SYN is dropped (or the host is unreachable)
    backend = Backend("http://192.0.2.1:9/v1", timeout_s=30, connect_timeout_s=0.3)
    with pytest.raises(RolloutError) as caught:
        await backend.post_json("http://192.0.2.1:9/v1/chat/completions", {})
    await backend.aclose()
    assert caught.value.retryable and caught.value.kind in ("timeout", "model_error")


async def test_connection_refused_is_a_retryable_model_error() -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    backend = Backend(url, SECRET, timeout_s=5)
    with pytest.raises(RolloutError) as caught:
        await backend.post_json(f"{url}/chat/completions", {})
    await backend.aclose()
    error = caught.value
    assert (error.kind, error.retryable, error.status) == ("model_error", True, 502)
    assert f"{url}/chat/completions could not be reached" in str(error)
    assert f"Is the server at {url} running?" in str(error)


async def test_a_server_that_hangs_up_without_answering_is_a_retryable_model_error() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    backend = Backend(f"http://127.0.0.1:{port}/v1", timeout_s=5)
    with pytest.raises(RolloutError) as caught:
        await backend.post_json(f"http://127.0.0.1:{port}/v1/chat/completions", {})
    await backend.aclose()
    server.close()
    await server.wait_closed()
    assert (caught.value.kind, caught.value.retryable, caught.value.status) == ("model_error", True, 502)


@pytest.mark.parametrize(
    ("status", "retryable", "passed_on"),
    [(500, True, 502), (502, True, 502), (503, True, 502), (429, True, 429), (400, False, 400), (404, False, 404),
     (422, False, 422), (401, False, 502)],
)
async def test_error_answers_are_mapped(status: int, retryable: bool, passed_on: int) -> None:
    async def fail(request: web.Request) -> web.Response:
        return web.Response(status=status, text=f"failure {status}")

    async with serve(fail) as url:
        backend = Backend(url, timeout_s=5)
        with pytest.raises(RolloutError) as caught:
            await backend.post_json(f"{url}/chat/completions", {})
        await backend.aclose()
    error = caught.value
    assert (error.kind, error.retryable, error.status) == ("model_error", retryable, passed_on)
    assert f"{url}/chat/completions answered HTTP {status}: failure {status}" in str(error)


async def test_invalid_json_is_a_model_error() -> None:
    async def garbage(request: web.Request) -> web.Response:
        return web.Response(text="<html>not json</html>")

    async with serve(garbage) as url:
        backend = Backend(url, timeout_s=5)
        with pytest.raises(RolloutError, match="answered invalid JSON"):
            await backend.post_json(f"{url}/chat/completions", {})
        await backend.aclose()


def openai_model(url: str, **settings: Any) -> OpenAIModel:
    config = OpenAIModelConfig.model_validate(
        {"name": "policy_model", "entrypoint": "app.py", "openai_base_url": url, "openai_api_key": SECRET,
         "openai_model": "served-name", **settings}
    )
    return OpenAIModel(config, ServerClient({}))


def asgi_client(model: OpenAIModel) -> ServerClient:
    """The agent's client, reaching the model server in-process (the upstream hop is over sockets)."""
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=model.build_app()))
    return ServerClient({"policy_model": "http://policy_model"}, http)


CHAT_ANSWER = {
    "id": "c1", "object": "chat.completion", "created": 0, "model": "served-name",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
}


async def test_a_5xx_from_upstream_is_retried_by_the_agents_model_call() -> None:
    calls: list[dict[str, Any]] = []
    failures = [503, 500]

    async def flaky(request: web.Request) -> web.Response:
        calls.append(await request.json())
        if len(calls) <= len(failures):
            return web.Response(status=failures[len(calls) - 1], text="overloaded, try again")
        return web.json_response(CHAT_ANSWER)

    body = {"messages": [{"role": "user", "content": "x"}]}
    async with serve(flaky) as url:
        model = openai_model(url, extra_body={"temperature": 0.5})
        client = asgi_client(model)
        first = await client.post("policy_model", "/v1/chat/completions", json=body)
        assert first.status_code == 502, first.text
        assert first.json()["retryable"] is True and f"{url}/chat/completions answered HTTP 503" in first.json()["error"]
        calls.clear()
        failures[:] = [502, 504]
        answer = await client.post_retrying("policy_model", "/v1/chat/completions", json=body, attempts=3)
        await client.aclose()
        await model.backend.aclose()
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"] == "hi"
    assert len(calls) == 3  # two retryable failures, then the answer
    assert all(c["model"] == "served-name" and c["temperature"] == 0.5 for c in calls)


async def test_the_api_key_is_never_logged_or_put_in_an_error(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    received: list[str] = []

    async def echo_headers(request: web.Request) -> web.Response:
        received.append(request.headers.get("Authorization", ""))
        if request.path.endswith("/slow"):
            await asyncio.sleep(2)
        # a careless backend that quotes the request's headers in its error
        return web.Response(status=500, text=f"bad request, headers were {dict(request.headers)}")

    messages: list[str] = []
    async with serve(echo_headers) as url:
        user_url = url.replace("http://", f"http://user:{SECRET}@")
        with pytest.raises(ConfigError) as refused_config:
            Backend(user_url, SECRET)
        messages.append(str(refused_config.value))
        for base, key in ((url, SECRET), (user_url, "")):
            backend = Backend(base, key, timeout_s=0.5)
            for path in ("/chat/completions", "/slow"):
                with pytest.raises(RolloutError) as caught:
                    await backend.post_json(base + path, {"messages": []})
                messages.append(str(caught.value))
            messages.append(repr(backend))
            await backend.aclose()
        refused = Backend(f"http://user:{SECRET}@127.0.0.1:{free_port()}/v1")
        with pytest.raises(RolloutError) as caught:
            await refused.post_json(refused.base_url + "/chat/completions", {})
        messages.append(str(caught.value))
        await refused.aclose()
        # and through the model server: its error body and its logs
        model = openai_model(url)
        client = asgi_client(model)
        answer = await client.post("policy_model", "/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]})
        messages.append(answer.text)
        await client.aclose()
        await model.backend.aclose()
    # the key was sent (as a bearer token, or basic auth from the URL): the test can fail
    assert f"Bearer {SECRET}" in received and any(r.startswith("Basic ") for r in received)
    assert any("headers were" in m and "***" in m for m in messages)  # the quoted header, masked
    assert any("timeout" in m for m in messages) and any("could not be reached" in m for m in messages)
    for text in [*messages, caplog.text]:
        assert SECRET not in text, text


async def test_the_pool_grows_with_the_calls_in_flight_and_keeps_connections_alive() -> None:
    peers: list[Any] = []
    in_flight = 0
    most = 0
    release = asyncio.Event()

    async def hold(request: web.Request) -> web.Response:
        nonlocal in_flight, most
        peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        in_flight += 1
        most = max(most, in_flight)
        if most >= 300:
            release.set()
        await asyncio.wait_for(release.wait(), 10)
        in_flight -= 1
        return web.json_response({})

    async with serve(hold) as url:
        backend = Backend(url, timeout_s=20)
        await asyncio.gather(*(backend.post_json(f"{url}/x", {}) for _ in range(300)))
        assert most == 300  # no bound by default: as many connections as calls in flight
        first = set(peers)
        peers.clear()
        await asyncio.gather(*(backend.post_json(f"{url}/x", {}) for _ in range(300)))
        assert set(peers) <= first  # the second round reused the kept-alive connections
        await backend.aclose()


async def test_max_connections_bounds_the_pool() -> None:
    in_flight = 0
    most = 0

    async def work(request: web.Request) -> web.Response:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return web.json_response({})

    async with serve(work) as url:
        backend = Backend(url, timeout_s=20, max_connections=4)
        await asyncio.gather(*(backend.post_json(f"{url}/x", {}) for _ in range(40)))
        await backend.aclose()
    assert most == 4
    with pytest.raises(ValueError, match="max_connections must be at least 1"):
        Backend("http://x/v1", max_connections=0)


def test_one_backend_serves_successive_event_loops() -> None:
    """A server object outlives an event loop in tests and in ng_test: the pool follows the loop."""

    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"ok": 1})

    backend_box: list[Backend] = []

    async def once() -> Any:
        async with serve(ok) as url:
            if not backend_box:
                backend_box.append(Backend(url, timeout_s=5))
            backend = backend_box[0]
            backend.base_url = url
            return await backend.post_json(f"{url}/x", {})

    assert asyncio.run(once()) == {"ok": 1}
    assert asyncio.run(once()) == {"ok": 1}
    asyncio.run(backend_box[0].aclose())


async def test_model_server_shutdown_closes_the_pool() -> None:
    async def ok(request: web.Request) -> web.Response:
        return web.json_response(CHAT_ANSWER)

    async with serve(ok) as url:
        model = openai_model(url)
        app = model.setup_webserver()
        async with app.router.lifespan_context(app):
            await model.backend.post_json(f"{url}/chat/completions", {})
            session = model.backend._aio
            assert session is not None and not session.closed
        assert session.closed
