"""Agent servers: drive a model through an environment's tools.

``POST /run`` takes a data row and returns the verified rollout (seed -> episode -> verify);
``POST /v1/responses`` runs one episode and returns it as a Response whose ``output`` is every
item generated along the way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response as HTTPResponse

from ngym.config.schema import ServerConfig
from ngym.errors import FailureKind, RolloutError
from ngym.server.base import Server, json_response
from ngym.server.client import Cookies, Reply
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


def upstream_error(what: str, server: str, response: Reply, kind: str) -> RolloutError:
    """A typed failure for a non-2xx answer from another server (429 and 5xx are retryable). A
    typed failure the server itself reported as ``bad_input`` or ``verifier_error`` keeps its kind
    and its ``retryable``."""
    status = response.status_code
    text = response.text[:2000]
    retryable = status == 429 or status >= 500
    reported = _typed_failure(response)
    if reported is not None and reported.get("kind") in PASSED_ON_KINDS:
        passed_on = FailureKind(str(reported["kind"]))
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


def _typed_failure(response: Reply) -> dict[str, object] | None:
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) and "kind" in body else None


SimpleResponsesAPIAgent = Agent
