"""The client servers use to call each other by instance name.

:class:`ServerClient` resolves an instance name to its base URL and sends through a
:class:`~ngym.server.transport.Transport`: into the app when this process hosts that server
(:class:`~ngym.server.transport.LocalTransport`), else over sockets
(:class:`~ngym.server.transport.AiohttpTransport`; an ``httpx.AsyncClient`` in tests). No
transport keeps cookies: the per-episode session cookies are passed per call and read from each
answer, never shared between episodes. Failures to get an answer raise ngym's
:class:`~ngym.errors.TransportError` tree.

An instance with ``num_replicas`` > 1 is a :class:`ReplicaPool`: a call that belongs to no episode
yet (``/seed_session``, ``/run``, a model call without a session) goes to the replica with the fewest
calls in flight from this client; a call carrying the instance's session cookie goes to the replica
the cookie names (:func:`ngym.server.sessions.replica_of`), so one episode's calls all reach the
replica that holds its state. If that replica is gone (connection refused or broken, or a
restarted replica's ``503 replica_lost``) the call raises :class:`~ngym.errors.ReplicaLost`.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson
import yaml
from omegaconf import DictConfig, OmegaConf
from pydantic import BaseModel

from ngym.config.schema import HeadServerConfig
from ngym.errors import ConnectError, DeploymentError, FailureKind, RemoteProtocolError, ReplicaLost
from ngym.server import local
from ngym.server.auth import TOKEN_ENV, TOKEN_HEADER, current_token
from ngym.server.http import Cookies, set_cookies
from ngym.server.sessions import replica_of
from ngym.server.transport import (
    AiohttpTransport,
    HttpxTransport,
    LocalTransport,
    Reply,
    Transport,
    make_http_client,
)

__all__ = [
    "Cookies",
    "Reply",
    "ReplicaPool",
    "ServerClient",
    "fetch_global_config",
    "instance_replicas",
    "instance_urls",
    "make_http_client",
    "response_cookies",
    "to_json_bytes",
    "with_retries",
]


def to_json_bytes(payload: Any) -> bytes:
    if isinstance(payload, BaseModel):
        payload = payload.model_dump(mode="json", exclude_none=True)
    return orjson.dumps(payload)


def response_cookies(response: httpx.Response | Reply) -> Cookies:
    """The cookies a response sets (``Set-Cookie``), by name (read by :func:`ngym.server.http.set_cookies`)."""
    if isinstance(response, Reply):
        return dict(response.cookies)
    return set_cookies([(k.lower(), v) for k, v in response.headers.raw])


def _deployment_urls(config: DictConfig | dict[str, Any]) -> tuple[dict[str, str], dict[str, list[str]]]:
    from ngym.config.deployment import build_deployment

    cfg = config if isinstance(config, DictConfig) else OmegaConf.create(config)
    deployment = build_deployment(cfg, assign_ports=False)
    urls = {name: spec.url for name, spec in deployment.servers.items()}
    replicas = {name: spec.replica_urls for name, spec in deployment.servers.items() if len(spec.replica_ports) > 1}
    return urls, replicas


def instance_urls(config: DictConfig | dict[str, Any]) -> dict[str, str]:
    """``instance name -> base URL`` (the first replica's) for every server-shaped entry of a
    (resolved) global config."""
    return _deployment_urls(config)[0]


def instance_replicas(config: DictConfig | dict[str, Any]) -> dict[str, list[str]]:
    """``instance name -> every replica's base URL`` for the instances with ``num_replicas`` > 1."""
    return _deployment_urls(config)[1]


class ReplicaPool:
    """The replicas of one instance, as one client sees them: calls in flight to each, and which
    refused a connection lately (skipped for :attr:`DOWN_S` seconds while others are up)."""

    DOWN_S = 1.0

    def __init__(self, name: str, urls: list[str]) -> None:
        self.name = name
        self.urls = urls
        self.cookie_suffix = f"___{name}"
        self.in_flight = [0] * len(urls)
        self.calls = [0] * len(urls)
        self._down_until = [0.0] * len(urls)
        self._next = 0

    def bound(self, cookies: Cookies | None) -> int | None:
        """The replica this call's session cookie names, or None (no session with this instance yet)."""
        if not cookies:
            return None
        for name, value in cookies.items():
            if name.endswith(self.cookie_suffix):
                found = replica_of(value)
                if found is not None:
                    return found
        return None

    def pick(self, exclude: set[int] | frozenset[int] = frozenset()) -> int | None:
        """The replica with the fewest calls in flight (up ones first; ties in turn), or None."""
        now = time.monotonic()
        n = len(self.urls)
        order = [(self._next + k) % n for k in range(n)]
        candidates = [i for i in order if i not in exclude]
        if not candidates:
            return None
        up = [i for i in candidates if self._down_until[i] <= now] or candidates
        best = min(up, key=lambda i: self.in_flight[i])
        self._next = (best + 1) % n
        return best

    def mark_down(self, index: int) -> None:
        self._down_until[index] = time.monotonic() + self.DOWN_S

    def lost(self, index: int, why: str) -> ReplicaLost:
        url = self.urls[index] if index < len(self.urls) else "?"
        return ReplicaLost(
            f"replica {index} of {self.name!r} ({url}), which holds this episode's session, is gone: {why}. "
            f"The episode cannot go on elsewhere (its state was on that replica); run it again."
        )


class ServerClient:
    """Calls other servers of the deployment by instance name.

    ``http`` (an ``httpx.AsyncClient``) or ``transport`` replaces the default aiohttp transport;
    servers hosted by this process are always reached in-process. ``replicas``: every replica's
    URL of the instances that have several (see :class:`ReplicaPool`)."""

    def __init__(
        self,
        urls: dict[str, str],
        http: httpx.AsyncClient | None = None,
        *,
        config: DictConfig | None = None,
        timeout_s: float = 900.0,
        transport: Transport | None = None,
        replicas: dict[str, list[str]] | None = None,
    ) -> None:
        self.urls = urls
        self.config = config
        self.timeout_s = timeout_s
        if transport is None:
            # a refused connection fails at once; the connect timeout bounds SYNs a saturated server's
            # full accept queue dropped (retransmitted after 1, 3, 7, 15, 31 s), which is slow, not dead
            transport = HttpxTransport(http) if http is not None else AiohttpTransport(timeout_s, connect_timeout_s=60.0)
        self.transport: Transport = transport
        self.local = LocalTransport(timeout_s)
        self.pools = {name: ReplicaPool(name, list(r)) for name, r in (replicas or {}).items() if len(r) > 1}

    @classmethod
    def from_config(cls, config: DictConfig, http: httpx.AsyncClient | None = None) -> ServerClient:
        urls, replicas = _deployment_urls(config)
        return cls(urls, http, config=config, replicas=replicas)

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

    async def _send(
        self, method: str, base: str, path: str, body: bytes | None, cookies: Cookies | None, timeout: float | None
    ) -> Reply:
        # a server hosted by this process: no socket (ngym.server.local)
        transport = self.local if local.app_for(base) is not None else self.transport
        return await transport.send(method, base, path, body, cookies, timeout)

    async def post(
        self,
        server_name: str,
        url_path: str,
        json: Any = None,
        cookies: Cookies | None = None,
        timeout: float | None = None,
    ) -> Reply:
        body = to_json_bytes({} if json is None else json)
        return await self._call("POST", server_name, url_path, body, cookies, timeout)

    async def _call(
        self, method: str, server_name: str, path: str, body: bytes | None, cookies: Cookies | None, timeout: float | None
    ) -> Reply:
        pool = self.pools.get(server_name)
        if pool is None:
            return await self._send(method, self.url_of(server_name), path, body, cookies, timeout)
        bound = pool.bound(cookies)
        if bound is not None:
            if bound >= len(pool.urls):
                raise pool.lost(bound, f"the deployment has {len(pool.urls)} replicas")
            return await self._bound_call(pool, bound, method, path, body, cookies, timeout)
        tried: set[int] = set()
        while True:
            index = pool.pick(tried)
            assert index is not None
            tried.add(index)
            pool.in_flight[index] += 1
            pool.calls[index] += 1
            try:
                return await self._send(method, pool.urls[index], path, body, cookies, timeout)
            except ConnectError:  # refused: nothing was sent, another replica can take it
                pool.mark_down(index)
                if len(tried) == len(pool.urls):
                    raise
            finally:
                pool.in_flight[index] -= 1

    async def _bound_call(
        self, pool: ReplicaPool, index: int, method: str, path: str, body: bytes | None, cookies: Cookies | None,
        timeout: float | None,
    ) -> Reply:
        pool.in_flight[index] += 1
        pool.calls[index] += 1
        try:
            reply = await self._send(method, pool.urls[index], path, body, cookies, timeout)
        except (ConnectError, RemoteProtocolError) as e:
            pool.mark_down(index)
            raise pool.lost(index, f"{type(e).__name__}: {e}") from None
        finally:
            pool.in_flight[index] -= 1
        if reply.status_code == 503 and _REPLICA_LOST in reply.content:
            raise pool.lost(index, "it was restarted since the episode began (it answered 503 replica_lost)")
        return reply

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
        return await self._call("GET", server_name, url_path, None, cookies, None)

    async def aclose(self) -> None:
        await self.transport.aclose()


RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: no answer, but the request may not have been processed: worth another try
TRANSIENT_ERRORS = (ConnectError, RemoteProtocolError)
#: how a replica that lost an episode's session names it in its 503 answer (ngym.server.sessions)
_REPLICA_LOST = f'"{FailureKind.REPLICA_LOST}"'.encode()


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
