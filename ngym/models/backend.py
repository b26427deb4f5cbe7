"""HTTP client of a model backend (vLLM, llama.cpp, any OpenAI-compatible server).

Unlike :class:`ngym.server.client.ServerClient` (server-to-server traffic inside a deployment),
this client never sends the deployment token: a backend may be outside the deployment.

Over sockets it is an ``aiohttp`` session: taking and giving back a pooled connection costs the
same with 10 or 10,000 open connections (httpx's pool scanned every connection on every request
and release, which kept a model server at 100% of a core at a few hundred calls in flight). Every
connection given back stays open for reuse until it has been idle ``keepalive_s``, so the pool
follows the concurrency the server sees; ``max_connections`` bounds it (requests beyond it wait
their turn, within ``timeout_s``). An ``httpx`` transport may be passed instead, for in-process
fakes in tests.

Errors, whichever client: no answer within ``timeout_s`` (or no connection within
``connect_timeout_s``) is a retryable ``timeout`` (504); a connection that cannot be made or breaks
is a retryable ``model_error`` (502); an HTTP error answer is a ``model_error`` by
:func:`backend_error` (429 and 5xx retryable). The caller (the agent's model call) retries what is
retryable. The API key is sent in the ``Authorization`` header only: it is masked in every message.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import httpx
import orjson

from ngym.errors import ConfigError, FailureKind, RolloutError, classify_failure

__all__ = ["Backend", "BackendReply", "backend_error", "root_url"]

#: seconds an idle pooled connection is kept; under the 5 s of uvicorn (vLLM), llama.cpp and most
#: proxies, so the server never closes a connection just as it is reused
KEEPALIVE_S = 4.0


def root_url(base_url: str) -> str:
    """``http://host:8000/v1`` -> ``http://host:8000`` (where vLLM's /tokenize and llama.cpp's native routes live)."""
    base = base_url.rstrip("/")
    return base.removesuffix("/v1")


def _without_userinfo(url: str) -> str:
    """``http://user:secret@host/v1`` -> ``http://***@host/v1``: credentials in a URL never reach a message."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


@dataclass(slots=True)
class BackendReply:
    """A backend's answer, read in full: status, body and the URL it came from."""

    status_code: int
    content: bytes
    url: str

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return orjson.loads(self.content)


class _Answer(Protocol):
    @property
    def status_code(self) -> int: ...

    @property
    def text(self) -> str: ...


class Backend:
    """One backend base URL with its own pool of keep-alive connections."""

    def __init__(
        self,
        base_url: str,
        api_key: str = "",
        timeout_s: float = 600.0,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        max_connections: int | None = None,
        # 60 s as the collector's: a CPU-starved server accepts late (10 s lost 34 of 32,000 rollouts at
        # 16,000 in flight, bench/README.md); a refused connection still fails at once
        connect_timeout_s: float = 60.0,
        keepalive_s: float = KEEPALIVE_S,
    ) -> None:
        if max_connections is not None and max_connections < 1:
            raise ValueError(f"max_connections must be at least 1 (or None for no bound), got {max_connections}")
        if api_key and "@" in urlsplit(base_url).netloc:
            raise ConfigError(
                f"the model backend URL {_without_userinfo(base_url)} carries credentials and an API key is set too: both "
                f"would be the Authorization header. Keep one (the API key, or user:password in the URL)"
            )
        self.base_url = base_url.rstrip("/")
        self.root = root_url(self.base_url)
        self.timeout_s = timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.max_connections = max_connections
        self.keepalive_s = keepalive_s
        self._secrets = [s for s in (api_key, urlsplit(base_url).password) if s]
        self._headers = {"content-type": "application/json"}
        if api_key:
            self._headers["authorization"] = f"Bearer {api_key}"
        self._transport = transport
        self._httpx: httpx.AsyncClient | None = None
        self._aio: aiohttp.ClientSession | None = None
        self._aio_loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"Backend({_without_userinfo(self.base_url)!r}, max_connections={self.max_connections})"

    # ---- clients ---------------------------------------------------------------------------------

    def _session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._aio is None or self._aio.closed or self._aio_loop is not loop:
            self._aio = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self.max_connections or 0, limit_per_host=0, keepalive_timeout=self.keepalive_s
                ),
                headers=self._headers,
                cookie_jar=aiohttp.DummyCookieJar(),  # one client serves every episode: no shared cookies
                timeout=aiohttp.ClientTimeout(total=self.timeout_s, sock_connect=self.connect_timeout_s),
                trust_env=False,
                auto_decompress=True,
            )
            self._aio_loop = loop
        return self._aio

    def _httpx_client(self) -> httpx.AsyncClient:
        if self._httpx is None:
            self._httpx = httpx.AsyncClient(
                transport=self._transport,
                headers=self._headers,
                timeout=httpx.Timeout(self.timeout_s, connect=self.connect_timeout_s),
                trust_env=False,
            )
        return self._httpx

    # ---- requests --------------------------------------------------------------------------------

    async def request(self, method: str, url: str, body: bytes | None = None) -> BackendReply:
        """Send ``body`` to an absolute URL and read the whole answer (any status); a timeout or a
        connection failure is a retryable :class:`RolloutError`."""
        try:
            if self._transport is not None:
                answer = await self._httpx_client().request(method, url, content=body)
                return BackendReply(answer.status_code, answer.content, url)
            async with self._session().request(method, url, data=body) as response:
                return BackendReply(response.status, await response.read(), url)
        except (TimeoutError, httpx.TimeoutException) as e:
            raise self._timeout(url, e) from None
        except (aiohttp.ClientError, httpx.HTTPError, OSError) as e:
            raise RolloutError(
                self._mask(
                    f"model backend {_without_userinfo(url)} could not be reached: {type(e).__name__}: {e}. Is the "
                    f"server at {_without_userinfo(self.base_url)} running?"
                ),
                kind=FailureKind.MODEL_ERROR,
                retryable=True,
                status=502,
            ) from None

    async def post(self, url: str, payload: dict[str, Any]) -> BackendReply:
        """POST JSON to an absolute URL; the answer whatever its status."""
        return await self.request("POST", url, orjson.dumps(payload))

    async def post_json(self, url: str, payload: dict[str, Any]) -> Any:
        """POST and decode; any non-2xx answer is a ``model_error`` naming the URL and the body."""
        return self._decoded(await self.post(url, payload))

    async def get_json(self, url: str) -> Any:
        """GET and decode, as :meth:`post_json`."""
        return self._decoded(await self.request("GET", url))

    def _decoded(self, answer: BackendReply) -> Any:
        if answer.status_code >= 400:
            raise self.error(answer.url, answer)
        try:
            return orjson.loads(answer.content)
        except orjson.JSONDecodeError as e:
            raise RolloutError(
                self._mask(f"model backend {_without_userinfo(answer.url)} answered invalid JSON ({e}): {answer.text[:200]}"),
                kind=FailureKind.MODEL_ERROR,
                retryable=False,
                status=502,
            ) from None

    def error(self, url: str, answer: _Answer) -> RolloutError:
        """:func:`backend_error` with this backend's API key masked in the quoted body."""
        error = backend_error(url, answer)
        masked = self._mask(str(error))
        return error if masked == str(error) else RolloutError(masked, kind=error.kind, retryable=error.retryable, status=error.status)

    def _timeout(self, url: str, e: BaseException) -> RolloutError:
        what = type(e).__name__ if str(e) == "" else f"{type(e).__name__}: {e}"
        return RolloutError(
            self._mask(
                f"model backend {_without_userinfo(url)} did not answer in time ({what}; timeout_s={self.timeout_s:g}, "
                f"connect timeout {self.connect_timeout_s:g} s); raise timeout_s of the model server if the model is "
                f"just slow"
            ),
            kind=FailureKind.TIMEOUT,
            retryable=True,
            status=504,
        )

    def _mask(self, message: str) -> str:
        for secret in self._secrets:
            message = message.replace(secret, "***")
        return message

    async def aclose(self) -> None:
        if self._aio is not None and not self._aio.closed:
            await self._aio.close()
        if self._httpx is not None:
            await self._httpx.aclose()


def backend_error(url: str, answer: _Answer) -> RolloutError:
    """A non-2xx answer as a ``model_error``: 429 and 5xx retryable; 400/404/422/429 passed on, others 502."""
    status = answer.status_code
    kind, retryable = classify_failure(status, FailureKind.MODEL_ERROR)
    return RolloutError(
        f"model backend {_without_userinfo(url)} answered HTTP {status}: {answer.text[:2000]}",
        kind=kind,
        retryable=retryable,
        status=status if status in (400, 404, 422, 429) else 502,
    )
