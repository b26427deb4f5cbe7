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
from typing import Any

import httpx
import orjson
import yaml
from omegaconf import DictConfig, OmegaConf
from pydantic import BaseModel

from ngym.config.schema import HeadServerConfig
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


def response_cookies(response: httpx.Response) -> Cookies:
    return {name: value for name, value in response.cookies.items()}


def make_http_client(
    timeout_s: float = 900.0, connect_timeout_s: float = 10.0, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    token = current_token()
    return _CookielessClient(
        transport=transport,
        headers={TOKEN_HEADER: token} if token else None,
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
    ) -> None:
        self.urls = urls
        self.config = config
        self._http = http

    @property
    def http(self) -> httpx.AsyncClient:
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

    async def post(
        self,
        server_name: str,
        url_path: str,
        json: Any = None,
        cookies: Cookies | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        headers = {"content-type": "application/json"}
        if cookies:
            headers["cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        return await self.http.post(
            self.url_of(server_name) + url_path,
            content=to_json_bytes({} if json is None else json),
            headers=headers,
            timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
        )

    async def post_retrying(
        self,
        server_name: str,
        url_path: str,
        json: Any = None,
        cookies: Cookies | None = None,
        attempts: int = 3,
        timeout: float | None = None,
    ) -> httpx.Response:
        """:meth:`post`, retrying transient failures (connection errors, 429, 500, 502-504) with
        jittered exponential backoff; the last answer (or error) is returned (raised)."""
        return await with_retries(lambda: self.post(server_name, url_path, json, cookies, timeout), attempts)

    async def get(self, server_name: str, url_path: str, cookies: Cookies | None = None) -> httpx.Response:
        headers = {"cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())} if cookies else {}
        return await self.http.get(self.url_of(server_name) + url_path, headers=headers)

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()


RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
TRANSIENT_ERRORS = (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError, httpx.PoolTimeout)


async def with_retries(
    send: Callable[[], Awaitable[httpx.Response]], attempts: int = 3, base_delay_s: float = 0.2
) -> httpx.Response:
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
