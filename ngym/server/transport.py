"""How :class:`~ngym.server.client.ServerClient` reaches a server: one small :class:`Transport`
protocol, three implementations.

* :class:`AiohttpTransport` — over sockets, one pooled ``aiohttp`` session per client (production);
* :class:`LocalTransport` — into an app hosted by this process (:mod:`ngym.server.local`);
* :class:`HttpxTransport` — through an ``httpx.AsyncClient`` (tests: in-process ASGI apps).

Each answers a :class:`Reply` or raises one of ngym's transport errors
(:class:`~ngym.errors.TransportError` and below, naming the URL), never its library's own; none
keeps cookies between calls (the per-episode session cookies are passed per call).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from http.cookiejar import Cookie, CookieJar
from typing import Any, Protocol

import aiohttp
import httpx
import orjson

from ngym.errors import ConnectError, ConnectTimeout, ReadTimeout, RemoteProtocolError, TransportError
from ngym.server import local
from ngym.server.asgi import IncompleteAnswer
from ngym.server.auth import TOKEN_HEADER, current_token
from ngym.server.http import Cookies, Headers, cookie_header, set_cookies


@dataclass(slots=True)
class Reply:
    """An HTTP answer from another server: status, body, where it came from, cookies it set."""

    status_code: int
    content: bytes
    url: str
    cookies: Cookies = field(default_factory=dict)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return orjson.loads(self.content)


class Transport(Protocol):
    """Sends one request (a JSON body or none) to ``base + path`` and answers a :class:`Reply`."""

    async def send(
        self, method: str, base: str, path: str, body: bytes | None, cookies: Cookies | None, timeout: float | None
    ) -> Reply: ...

    async def aclose(self) -> None: ...


def request_headers(body: bytes | None, cookies: Cookies | None) -> dict[str, str]:
    headers = {"content-type": "application/json"} if body is not None else {}
    if cookies:
        headers["cookie"] = cookie_header(cookies)
    return headers


class AiohttpTransport:
    """Over sockets: one pooled ``aiohttp`` session (made on first use, in the running loop) that
    never stores cookies and carries the deployment token."""

    def __init__(self, timeout_s: float = 900.0, connect_timeout_s: float = 60.0) -> None:
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            token = current_token()
            self._session = aiohttp.ClientSession(
                # idle connections close after 10 s (well under the servers' 75 s): when the mix of
                # rollouts in flight shifts between agents, idle sockets do not pile up
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=10),
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(total=self.timeout_s, connect=self.connect_timeout_s),
                headers={TOKEN_HEADER: token} if token else None,
                json_serialize=lambda v: orjson.dumps(v).decode(),
                trust_env=False,
            )
        return self._session

    async def send(
        self, method: str, base: str, path: str, body: bytes | None, cookies: Cookies | None, timeout: float | None
    ) -> Reply:
        url = base + path
        request_timeout = aiohttp.ClientTimeout(total=timeout, connect=self.connect_timeout_s) if timeout else None
        try:
            async with self.session().request(
                method, url, data=body, headers=request_headers(body, cookies), timeout=request_timeout
            ) as answer:
                content = await answer.read()
                headers: Headers = [(k.lower(), v) for k, v in answer.raw_headers]
                return Reply(answer.status, content, url, set_cookies(headers))
        except aiohttp.ConnectionTimeoutError:
            raise ConnectTimeout(
                f"could not connect to {url} within {self.connect_timeout_s:g} s (is the server overloaded or down?)"
            ) from None
        except TimeoutError:
            raise ReadTimeout(f"no answer from {url} in time") from None
        except aiohttp.ServerDisconnectedError as e:
            raise RemoteProtocolError(f"{url}: {e}") from None
        except aiohttp.ClientConnectionError as e:
            raise ConnectError(f"{url}: {e}") from None
        except aiohttp.ClientError as e:
            raise TransportError(f"{url}: {type(e).__name__}: {e}") from None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


class LocalTransport:
    """Into the app this process hosts for ``base`` (:func:`ngym.server.local.register`)."""

    def __init__(self, timeout_s: float = 900.0) -> None:
        self.timeout_s = timeout_s

    async def send(
        self, method: str, base: str, path: str, body: bytes | None, cookies: Cookies | None, timeout: float | None
    ) -> Reply:
        url = base + path
        app = local.app_for(base)
        if app is None:
            raise ConnectError(f"{url}: no server is hosted in this process for {base}")
        headers = {"content-type": "application/json"} if body is not None else {}
        token = current_token()
        if token:
            headers[TOKEN_HEADER] = token
        try:
            async with asyncio.timeout(timeout if timeout is not None else self.timeout_s):
                status, content, got = await local.call(app, base, method, path, body, cookies, headers)
        except TimeoutError:
            raise ReadTimeout(f"no answer from {url} in time") from None
        except IncompleteAnswer as e:
            raise RemoteProtocolError(f"{url}: {e}") from None
        return Reply(status, content, url, got)

    async def aclose(self) -> None:
        return None


class _NoCookieJar(CookieJar):
    """A jar that never stores: responses of one episode must not leak into another."""

    def set_cookie(self, cookie: Cookie) -> None:
        return None

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None


class _CookielessClient(httpx.AsyncClient):
    """An AsyncClient whose cookie store never keeps anything (httpx copies a jar handed to it)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._cookies.jar = _NoCookieJar()


def make_http_client(
    timeout_s: float = 900.0, connect_timeout_s: float = 10.0, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` that keeps no cookies, with explicit timeouts and no proxy settings."""
    return _CookielessClient(
        transport=transport,
        timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=1024),
        trust_env=False,
    )


class HttpxTransport:
    """Through an ``httpx.AsyncClient`` (in tests, one routing to in-process ASGI apps,
    :mod:`ngym.devkit.testing.asgi`)."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def send(
        self, method: str, base: str, path: str, body: bytes | None, cookies: Cookies | None, timeout: float | None
    ) -> Reply:
        url = base + path
        try:
            answer = await self.http.request(
                method, url, content=body, headers=request_headers(body, cookies),
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except TransportError:
            raise
        except httpx.ConnectTimeout as e:
            raise ConnectTimeout(f"could not connect to {url} in time: {e}") from None
        except httpx.TimeoutException:
            raise ReadTimeout(f"no answer from {url} in time") from None
        except httpx.ConnectError as e:
            raise ConnectError(f"{url}: {e}") from None
        except (httpx.RemoteProtocolError, httpx.NetworkError) as e:  # the connection broke
            raise RemoteProtocolError(f"{url}: {type(e).__name__}: {e}") from None
        except httpx.TransportError as e:
            raise TransportError(f"{url}: {type(e).__name__}: {e}") from None
        return Reply(answer.status_code, answer.content, str(answer.url), set_cookies([(k.lower(), v) for k, v in answer.headers.raw]))

    async def aclose(self) -> None:
        await self.http.aclose()
