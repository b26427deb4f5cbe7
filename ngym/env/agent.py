"""Agent servers: drive a model through an environment's tools.

``POST /run`` takes a data row and returns the verified rollout (seed -> episode -> verify);
``POST /v1/responses`` runs one episode and returns it as a Response whose ``output`` is every
item generated along the way.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response as HTTPResponse

from ngym.config.schema import ServerConfig
from ngym.errors import FailureKind, RolloutError, classify_failure
from ngym.server.base import Server, json_response
from ngym.server.client import Cookies, Reply, ServerClient, response_cookies
from ngym.wire.responses import Response, ResponseCreateParams
from ngym.wire.rows import RunRequest, dump


@dataclass(slots=True)
class Episode:
    """One finished episode and the cookies (sessions) it ended with."""

    response: Response
    resources_cookies: Cookies = field(default_factory=dict)
    model_cookies: Cookies = field(default_factory=dict)


class Agent(Server[ServerConfig]):
    """Base of agents: implement :meth:`episode` and :meth:`run`."""

    server_type = "responses_api_agents"

    def setup_webserver(self) -> FastAPI:
        app = super().setup_webserver()

        @app.post("/v1/responses")
        async def responses(body: ResponseCreateParams, request: Request) -> HTTPResponse:
            episode = await self.episode(body, dict(request.cookies))
            out = json_response(dump(episode.response))
            for name, value in {**episode.model_cookies, **episode.resources_cookies}.items():
                out.set_cookie(name, value, httponly=True, samesite="lax")
            return out

        @app.post("/run")
        async def run(body: RunRequest, request: Request) -> HTTPResponse:
            if body.model_extra:
                try:  # the task fields travel to the environment as JSON: refuse what cannot, up front
                    orjson.dumps(body.model_extra)
                except TypeError as e:
                    raise RolloutError(f"/run on {self.config.name!r}: the row holds a value JSON between ngym "
                                       f"servers cannot carry ({e}; integers are at most 64 bits). Fix the data row.",
                                       kind=FailureKind.BAD_INPUT, retryable=False, status=422) from None
            result = await self.run(body, dict(request.cookies))
            if isinstance(result, bytes):  # already JSON (the verifier's answer, passed through)
                return HTTPResponse(result, media_type="application/json")
            return json_response(result)

        return app

    async def episode(self, body: ResponseCreateParams, resources_cookies: Cookies) -> Episode:
        raise NotImplementedError

    async def run(self, body: RunRequest, cookies: Cookies) -> dict[str, object] | bytes:
        """The verified rollout: a dict, or its JSON bytes (for example the verifier's answer as is)."""
        raise NotImplementedError


#: failure kinds another server's answer keeps when an agent passes it on: the row is bad (the
#: environment said so at /seed_session or /verify), or the verifier could not score the rollout
PASSED_ON_KINDS = frozenset({FailureKind.BAD_INPUT, FailureKind.VERIFIER_ERROR})


def upstream_error(what: str, server: str, response: Reply, kind: FailureKind) -> RolloutError:
    """A typed failure for a non-2xx answer from another server (kind and retryable from
    :func:`~ngym.errors.classify_failure`: 429 and 5xx are retryable). A typed failure the server
    itself reported as ``bad_input`` or ``verifier_error`` keeps its kind and its ``retryable``."""
    status = response.status_code
    text = response.text[:2000]
    kind, retryable = classify_failure(status, kind)
    reported = _typed_failure(response)
    passed_on = FailureKind.parse(reported.get("kind")) if reported is not None else None
    if reported is not None and passed_on in PASSED_ON_KINDS:
        retryable = bool(reported.get("retryable", False))
        text = str(reported.get("error") or text)[:2000]
        return RolloutError(
            f"{what} on {server!r} ({response.url}) answered HTTP {status}: {text}",
            kind=passed_on,
            retryable=retryable,
            status=422 if passed_on is FailureKind.BAD_INPUT else 502,
        )
    return RolloutError(
        f"{what} on {server!r} ({response.url}) answered HTTP {status}: {text}",
        kind=kind,
        retryable=retryable,
        status=502 if status >= 500 else (status if status == 429 else 502),
    )


async def call_server(
    client: ServerClient,
    server: str,
    path: str,
    *,
    at: FailureKind,
    role: str,
    what: str,
    json: Any,
    cookies: Cookies,
    attempts: int = 1,
    timeout: float | None = None,
    timeout_setting: str = "",
    check_status: bool = True,
) -> Reply:
    """POST ``json`` to ``path`` on another server of the deployment, the one way an agent calls
    the model or the environment: its cookies are added to ``cookies``, and a failure becomes a
    typed :class:`RolloutError` (kind and retryable from :func:`~ngym.errors.classify_failure`).

    ``at`` is the kind of a failure at this boundary (``MODEL_ERROR``, ``RESOURCES_ERROR``,
    ``VERIFIER_ERROR``); ``role`` and ``what`` name the server and the call in messages
    (``"model server"``, ``"/verify"``); ``timeout_setting`` names the config key of ``timeout``.
    No answer in time is a ``TIMEOUT``; no answer at all is ``at``; an error answer (4xx/5xx) is
    :func:`upstream_error` unless ``check_status`` is False (then it is returned). With
    ``attempts > 1`` transient failures are retried (:meth:`ServerClient.post_retrying`); one
    attempt is also bounded by ``timeout`` in asyncio (a server hosted in this process).
    """
    try:
        send = client.post_retrying(server, path, json=json, cookies=cookies, attempts=attempts, timeout=timeout)
        answer = await (send if timeout is None or attempts > 1 else asyncio.wait_for(send, timeout))
    except (httpx.HTTPError, asyncio.TimeoutError) as e:
        kind, retryable = classify_failure(e, at)
        where = f"{role} {server!r} at {client.url_of(server)}"
        stalled = kind is FailureKind.TIMEOUT and not isinstance(e, httpx.ConnectTimeout)
        if stalled:
            limit = "in time" if timeout is None else f"within {timeout_setting or 'timeout'}={timeout:g} s"
            message = f"{where} gave no answer for {what} {limit} (stalled?)"
        else:
            message = f"{where} could not be reached for {what}: {type(e).__name__}: {e}"
        raise RolloutError(message, kind=kind, retryable=retryable, status=502) from None
    if check_status and answer.status_code >= 400:
        raise upstream_error(what[:1].upper() + what[1:], server, answer, kind=at)
    cookies.update(response_cookies(answer))
    return answer


def _typed_failure(response: Reply) -> dict[str, object] | None:
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) and "kind" in body else None


SimpleResponsesAPIAgent = Agent
