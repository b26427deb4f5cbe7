"""The client servers use to call each other by instance name.

One pooled ``httpx.AsyncClient`` per process, with explicit timeouts and **no cookie jar**: cookies
(the per-episode session) are passed per call and read from each response, never shared between
episodes.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from collections.abc import Awaitable, Callable
from http.cookiejar import Cookie, CookieJar
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import httpx
import orjson
import yaml
from omegaconf import DictConfig, OmegaConf
from pydantic import BaseModel

from ngym.config.schema import HeadServerConfig
from ngym.server import local
from ngym.server.auth import TOKEN_ENV, TOKEN_HEADER, current_token
from ngym.errors import DeploymentError

Cookies = dict[str, str]


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


def to_json_bytes(payload: Any) -> bytes:
    if isinstance(payload, BaseModel):
        payload = payload.model_dump(mode="json", exclude_none=True)
    return orjson.dumps(payload)


def response_cookies(response: httpx.Response | Reply) -> Cookies:
    """The cookies a response sets (``Set-Cookie``), by name."""
    if isinstance(response, Reply):
        return dict(response.cookies)
    return {name: value for name, value in response.cookies.items()}


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


def make_http_client(
    timeout_s: float = 900.0, connect_timeout_s: float = 10.0, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    return _CookielessClient(
        transport=transport,
        timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=1024),
        trust_env=False,
    )


def instance_urls(config: DictConfig | dict[str, Any]) -> dict[str, str]:
    """``instance name -> base URL`` for every server-shaped entry of a (resolved) global config."""
    from ngym.config.deployment import build_deployment

    cfg = config if isinstance(config, DictConfig) else OmegaConf.create(config)
    deployment = build_deployment(cfg, assign_ports=False)
    return {name: spec.url for name, spec in deployment.servers.items()}


class ServerClient:
    """Calls other servers of the deployment by instance name."""

    def __init__(
        self,
        urls: dict[str, str],
        http: httpx.AsyncClient | None = None,
        *,
        config: DictConfig | None = None,
        timeout_s: float = 900.0,
    ) -> None:
        self.urls = urls
        self.config = config
        self._http = http
        self._aio: aiohttp.ClientSession | None = None
        self.timeout_s = timeout_s
        # a refused connection fails at once; this bounds SYNs a saturated server's full accept queue
        # dropped (retransmitted after 1, 3, 7, 15, 31 s), which is slow, not dead
        self.connect_timeout_s = 60.0

    @property
    def http(self) -> httpx.AsyncClient:
        """The httpx client (in-process tests); servers talking over sockets use aiohttp."""
        if self._http is None:
            self._http = make_http_client()
        return self._http

    @classmethod
    def from_config(cls, config: DictConfig, http: httpx.AsyncClient | None = None) -> ServerClient:
        return cls(instance_urls(config), http, config=config)

    @classmethod
    async def from_head_server(
        cls, head: HeadServerConfig | None = None, http: httpx.AsyncClient | None = None
    ) -> ServerClient:
        """Discover the deployment through its head server (``GET /global_config_dict_yaml``)."""
        head = head or HeadServerConfig()
        config = await fetch_global_config(head)
        return cls.from_config(config, http)

    def url_of(self, server_name: str) -> str:
        try:
            return self.urls[server_name]
        except KeyError:
            raise DeploymentError(
                f"No server instance named {server_name!r} in this deployment. "
                f"Instances: {sorted(self.urls) or 'none'}."
            ) from None

    def _session(self) -> aiohttp.ClientSession:
        if self._aio is None or self._aio.closed:
            token = current_token()
            self._aio = aiohttp.ClientSession(
                # idle connections close after 10 s (well under the servers' 75 s): when the mix of
                # rollouts in flight shifts between agents, idle sockets do not pile up
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=10),
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(total=self.timeout_s, connect=self.connect_timeout_s),
                headers={TOKEN_HEADER: token} if token else None,
                json_serialize=lambda v: orjson.dumps(v).decode(),
                trust_env=False,
            )
        return self._aio

    async def _send(
        self, method: str, base: str, path: str, body: bytes | None, cookies: Cookies | None, timeout: float | None
    ) -> Reply:
        app = local.app_for(base)
        if app is not None:  # a server hosted by this process: no socket (ngym.server.local)
            return await self._send_local(app, method, base, path, body, cookies, timeout)
        url = base + path
        headers = {"content-type": "application/json"} if body is not None else {}
        if cookies:
            headers["cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        if self._http is not None:  # an explicit httpx client: in-process ASGI apps in tests
            answer = await self._http.request(
                method, url, content=body, headers=headers,
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
            return Reply(answer.status_code, answer.content, str(answer.url), response_cookies(answer))
        request_timeout = aiohttp.ClientTimeout(total=timeout, connect=self.connect_timeout_s) if timeout else None
        try:
            async with self._session().request(
                method, url, data=body, headers=headers, timeout=request_timeout
            ) as answer:
                content = await answer.read()
                got = {name: morsel.value for name, morsel in answer.cookies.items()}
                return Reply(answer.status, content, url, got)
        except aiohttp.ConnectionTimeoutError:
            raise httpx.ConnectTimeout(
                f"could not connect to {url} within {self.connect_timeout_s:g} s (is the server overloaded or down?)"
            ) from None
        except asyncio.TimeoutError:
            raise httpx.ReadTimeout(f"no answer from {url} in time") from None
        except aiohttp.ServerDisconnectedError as e:
            raise httpx.RemoteProtocolError(f"{url}: {e}") from None
        except aiohttp.ClientConnectionError as e:
            raise httpx.ConnectError(f"{url}: {e}") from None
        except aiohttp.ClientError as e:
            raise httpx.TransportError(f"{url}: {type(e).__name__}: {e}") from None

    async def _send_local(
        self, app: Any, method: str, base: str, path: str, body: bytes | None, cookies: Cookies | None,
        timeout: float | None,
    ) -> Reply:
        url = base + path
        headers = {"content-type": "application/json"} if body is not None else {}
        token = current_token()
        if token:
            headers[TOKEN_HEADER] = token
        try:
            async with asyncio.timeout(timeout if timeout is not None else self.timeout_s):
                status, content, got = await local.call(app, base, method, path, body, cookies, headers)
        except TimeoutError:
            raise httpx.ReadTimeout(f"no answer from {url} in time") from None
        except local.LocalCallError as e:
            raise httpx.RemoteProtocolError(f"{url}: {e}") from None
        return Reply(status, content, url, got)

    async def post(
        self,
        server_name: str,
        url_path: str,
        json: Any = None,
        cookies: Cookies | None = None,
        timeout: float | None = None,
    ) -> Reply:
        body = to_json_bytes({} if json is None else json)
        return await self._send("POST", self.url_of(server_name), url_path, body, cookies, timeout)

    async def post_retrying(
        self,
        server_name: str,
        url_path: str,
        json: Any = None,
        cookies: Cookies | None = None,
        attempts: int = 3,
        timeout: float | None = None,
    ) -> Reply:
        """:meth:`post`, retrying transient failures (connection errors, 429, 500, 502-504) with
        jittered exponential backoff; the last answer (or error) is returned (raised)."""
        return await with_retries(lambda: self.post(server_name, url_path, json, cookies, timeout), attempts)

    async def get(self, server_name: str, url_path: str, cookies: Cookies | None = None) -> Reply:
        return await self._send("GET", self.url_of(server_name), url_path, None, cookies, None)

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
        if self._aio is not None:
            await self._aio.close()


RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
TRANSIENT_ERRORS = (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError, httpx.PoolTimeout)


async def with_retries(
    send: Callable[[], Awaitable[Reply]], attempts: int = 3, base_delay_s: float = 0.2
) -> Reply:
    for attempt in range(1, attempts + 1):
        try:
            answer = await send()
        except TRANSIENT_ERRORS:
            if attempt == attempts:
                raise
        else:
            if answer.status_code not in RETRY_STATUSES or attempt == attempts:
                return answer
        await asyncio.sleep(min(10.0, base_delay_s * 2 ** (attempt - 1)) * (0.5 + random.random()))
    raise AssertionError("unreachable")


async def fetch_global_config(head: HeadServerConfig, timeout_s: float = 5.0) -> DictConfig:
    url = f"{head.url}/global_config_dict_yaml"
    token = current_token(head.port)
    if token:
        os.environ.setdefault(TOKEN_ENV, token)  # later calls to the deployment's servers carry it
    try:
        async with httpx.AsyncClient(
            timeout=timeout_s, trust_env=False, headers={TOKEN_HEADER: token} if token else None
        ) as http:
            response = await http.get(url)
            response.raise_for_status()
    except httpx.HTTPError as e:
        raise DeploymentError(
            f"Could not reach the head server at {head.url} ({type(e).__name__}: {e}). Start the servers with "
            f"`ng_run \"+config_paths=[...]\"` first, or point to another deployment with "
            f"+head_server.host=... +head_server.port=..."
        ) from None
    text = json.loads(response.text)
    cfg = OmegaConf.create(yaml.safe_load(text) or {})
    assert isinstance(cfg, DictConfig)
    return cfg
