"""Per-episode sessions carried by a signed cookie, and a TTL store for per-session state.

The cookie is named ``<ServerClass>___<instance>`` (as in the reference) and holds
``<session id>.<signature>``, signed with a random per-deployment secret (``NGYM_SESSION_SECRET``,
set by ``ng_run``). It is set once, when a session starts, not re-signed on every response.
Handlers read the id with :func:`session_id` (or ``request.session["session_id"]``).

Replicas (``num_replicas`` > 1; the launcher sets ``NGYM_REPLICA`` to the process's index) start
sessions named ``r<index>-<boot>-<random>``: the cookie names the replica that holds the episode's
state, so a client routes every later call of the episode there
(:class:`~ngym.server.client.ServerClient`), and a replica answers ``503 replica_lost`` to a session
it did not start (another replica's, or its own from before a restart: that state is gone), never
a fresh empty state.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
import random
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

import orjson
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ngym.errors import FailureKind
from ngym.server.http import parse_cookie_header

SESSION_ID_KEY = "session_id"
SECRET_ENV = "NGYM_SESSION_SECRET"
#: this process's index among the replicas of its instance (set by the launcher when num_replicas > 1)
REPLICA_ENV = "NGYM_REPLICA"
#: differs between two runs of one replica: sessions from before a restart are recognised
_BOOT = secrets.token_hex(4)

T = TypeVar("T")


def deployment_secret() -> bytes:
    """The per-deployment signing secret (random per process when not started by ``ng_run``)."""
    value = os.environ.get(SECRET_ENV)
    if not value:
        value = secrets.token_hex(32)
        os.environ[SECRET_ENV] = value
    return value.encode()


def new_session_id() -> str:
    """A fresh session id: unique, not a secret (the cookie's signature is what cannot be forged);
    a replica's names the replica (``r<index>-<boot>-<random>``)."""
    replica = os.environ.get(REPLICA_ENV)
    if replica:
        return f"r{replica}-{_BOOT}-{random.getrandbits(96):024x}"
    return f"{random.getrandbits(128):032x}"


def replica_of(cookie_value: str) -> int | None:
    """The replica a session cookie's value names, or None (a session of an unreplicated server)."""
    if not cookie_value.startswith("r"):
        return None
    head, sep, _ = cookie_value[1:].partition("-")
    return int(head) if sep and head.isdigit() else None


def foreign_session(sid: str) -> bool:
    """Whether this process is a replica and ``sid`` is a session it did not start."""
    replica = os.environ.get(REPLICA_ENV)
    return bool(replica) and not sid.startswith(f"r{replica}-{_BOOT}-")


def replica_lost_body(cookie_name: str, sid: str) -> bytes:
    """The ``503`` body a replica answers for a session it does not hold."""
    replica = os.environ.get(REPLICA_ENV)
    server = cookie_name.partition("___")[2] or cookie_name
    return orjson.dumps({
        "error": f"replica {replica} of {server!r} does not hold session {sid[:40]!r}: the replica that started "
                 f"it died or was restarted, and the episode's state went with it. Run the episode again.",
        "kind": FailureKind.REPLICA_LOST,
        "retryable": True,
        "server": server,
    })


class SessionCookie:
    """The signed session cookie of one server: ``<name>=<session id>.<signature>``."""

    def __init__(self, name: str, secret: bytes | None = None) -> None:
        self.name = name
        self.secret = secret or deployment_secret()

    def sign(self, sid: str) -> str:
        return hashlib.blake2b(sid.encode(), key=self.secret[:64], digest_size=16).hexdigest()

    def verify(self, value: str) -> str | None:
        """The session id in a cookie value, or None if it is not one this deployment signed."""
        sid, _, sig = value.partition(".")
        return sid if sid and hmac.compare_digest(sig, self.sign(sid)) else None

    def value(self, sid: str) -> str:
        return f"{sid}.{self.sign(sid)}"

    def header(self, sid: str) -> bytes:
        return f"{self.name}={self.value(sid)}; Path=/; HttpOnly; SameSite=lax".encode("latin-1")


class SessionMiddleware:
    """Pure ASGI middleware: finds or starts the session, sets the cookie only for new sessions."""

    def __init__(self, app: ASGIApp, cookie_name: str, secret: bytes | None = None) -> None:
        self.app = app
        self.cookie = SessionCookie(cookie_name, secret)

    def _read(self, scope: Scope) -> str | None:
        for name, value in scope.get("headers", ()):
            if name != b"cookie":
                continue
            given = parse_cookie_header(value).get(self.cookie.name)
            sid = self.cookie.verify(given) if given else None
            if sid:
                return sid
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sid = self._read(scope)
        if sid is not None and foreign_session(sid):
            body = replica_lost_body(self.cookie.name, sid)
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 503, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        is_new = sid is None
        if sid is None:
            sid = new_session_id()
        scope["session"] = {SESSION_ID_KEY: sid}
        scope.setdefault("state", {})[SESSION_ID_KEY] = sid
        if not is_new:
            await self.app(scope, receive, send)
            return
        cookie = self.cookie.header(sid)

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"set-cookie", cookie)]
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def session_id(request: Request) -> str:
    """The id of the episode this request belongs to."""
    return str(request.scope["session"][SESSION_ID_KEY])


class SessionStore(Generic[T]):
    """Per-session state with a time-to-live: idle sessions are dropped, so long runs stay bounded.

    >>> store: SessionStore[int] = SessionStore(ttl_s=60)
    >>> store.setdefault("s1", 3)
    3
    >>> store["s1"] += 2; store["s1"]
    5
    """

    def __init__(self, ttl_s: float = 3600.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._data: OrderedDict[str, tuple[float, T]] = OrderedDict()

    def _evict(self, now: float) -> None:
        while self._data:
            key, (touched, _) = next(iter(self._data.items()))
            if now - touched < self.ttl_s:
                break
            del self._data[key]

    def _touch(self, key: str, value: T) -> None:
        now = self._clock()
        self._data[key] = (now, value)
        self._data.move_to_end(key)
        self._evict(now)

    def __contains__(self, key: object) -> bool:
        self._evict(self._clock())
        return key in self._data

    def __getitem__(self, key: str) -> T:
        self._evict(self._clock())
        value = self._data[key][1]
        self._touch(key, value)
        return value

    def __setitem__(self, key: str, value: T) -> None:
        self._touch(key, value)

    def get(self, key: str, default: Any = None) -> T | Any:
        return self[key] if key in self else default

    def setdefault(self, key: str, default: T) -> T:
        if key in self:
            return self[key]
        self[key] = default
        return default

    def pop(self, key: str, default: Any = None) -> T | Any:
        item = self._data.pop(key, None)
        return default if item is None else item[1]

    def __len__(self) -> int:
        self._evict(self._clock())
        return len(self._data)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._data))
