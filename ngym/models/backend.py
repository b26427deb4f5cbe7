"""HTTP client of a model backend (vLLM, llama.cpp, any OpenAI-compatible server).

Unlike :func:`ngym.server.client.make_http_client` (server-to-server traffic inside a deployment),
this client never sends the deployment token: a backend may be outside the deployment.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson

from ngym.errors import FailureKind, RolloutError, classify_failure

__all__ = ["Backend", "root_url"]


def root_url(base_url: str) -> str:
    """``http://host:8000/v1`` -> ``http://host:8000`` (where vLLM's /tokenize and llama.cpp's native routes live)."""
    base = base_url.rstrip("/")
    return base[: -len("/v1")] if base.endswith("/v1") else base


class Backend:
    """One backend base URL with its own pooled connection."""

    def __init__(
        self,
        base_url: str,
        api_key: str = "",
        timeout_s: float = 600.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.root = root_url(self.base_url)
        headers = {"content-type": "application/json"}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        self.http = httpx.AsyncClient(
            transport=transport,
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=10.0),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=256),
            trust_env=False,
        )

    async def post(self, url: str, payload: dict[str, Any]) -> httpx.Response:
        """POST JSON to an absolute URL; a connection failure is a retryable ``model_error``."""
        try:
            return await self.http.post(url, content=orjson.dumps(payload))
        except httpx.TimeoutException as e:
            raise RolloutError(
                f"model backend {url} did not answer in time ({type(e).__name__}); raise timeout_s of the model "
                f"server if the model is just slow",
                kind=FailureKind.TIMEOUT,
                retryable=True,
                status=504,
            ) from None
        except httpx.HTTPError as e:
            raise RolloutError(
                f"model backend {url} could not be reached: {type(e).__name__}: {e}. Is the server at "
                f"{self.base_url} running?",
                kind=FailureKind.MODEL_ERROR,
                retryable=True,
                status=502,
            ) from None

    async def post_json(self, url: str, payload: dict[str, Any]) -> Any:
        """POST and decode; any non-2xx answer is a ``model_error`` naming the URL and the body."""
        answer = await self.post(url, payload)
        if answer.status_code >= 400:
            raise backend_error(url, answer)
        return orjson.loads(answer.content)

    async def aclose(self) -> None:
        await self.http.aclose()


def backend_error(url: str, answer: httpx.Response) -> RolloutError:
    status = answer.status_code
    kind, retryable = classify_failure(status, FailureKind.MODEL_ERROR)
    return RolloutError(
        f"model backend {url} answered HTTP {status}: {answer.text[:2000]}",
        kind=kind,
        retryable=retryable,
        status=status if status in (400, 404, 422, 429) else 502,
    )
