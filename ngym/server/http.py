"""HTTP details shared by the server core: raw ASGI headers, the one cookie parser, the one
``Set-Cookie`` reader, JSON content types and responses. Depends on nothing else of ngym."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

#: raw ASGI headers: lower-case names, latin-1 bytes
Headers = list[tuple[bytes, bytes]]
#: cookies of one episode, by name
Cookies = dict[str, str]
JSON_TYPE = (b"content-type", b"application/json")


def parse_cookie_header(value: bytes | str | None) -> Cookies:
    """A ``Cookie`` header -> cookies by name: ``a=1; b=2`` -> ``{"a": "1", "b": "2"}`` (values as
    sent; quoted values lose their quotes; parts without ``=`` are skipped). The one cookie parser of
    ngym: the session middleware, the fast path and the in-process client read cookies with it."""
    if not value:
        return {}
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    cookies: Cookies = {}
    for part in text.split(";"):
        name, sep, val = part.partition("=")
        if sep:
            cookies[name.strip()] = val.strip().strip('"')
    return cookies


def cookie_header(cookies: Cookies) -> str:
    """Cookies by name -> the value of a ``Cookie`` header."""
    return "; ".join(f"{k}={v}" for k, v in cookies.items())


def set_cookies(headers: Headers) -> Cookies:
    """The cookies a response sets (its ``Set-Cookie`` headers), by name: the one ``Set-Cookie``
    reader of ngym, for every transport."""
    cookies: Cookies = {}
    for name, value in headers:
        if name == b"set-cookie":
            pair = value.decode("latin-1").split(";", 1)[0]
            key, sep, val = pair.partition("=")
            if sep:
                cookies[key.strip()] = val.strip().strip('"')
    return cookies


def is_json_body(headers: Headers) -> bool:
    """FastAPI parses a body as JSON when the content type is absent, ``application/json`` or
    ``application/*+json``; other bodies are its business (it validates the raw bytes)."""
    value = next((v for k, v in headers if k == b"content-type"), b"")
    kind = value.split(b";", 1)[0].strip().lower()
    return not kind or kind == b"application/json" or (kind.startswith(b"application/") and kind.endswith(b"+json"))


def json_response(payload: Any, status_code: int = 200) -> Response:
    """A JSON response serialised once with orjson (no response-model validation on the hot path)."""
    return Response(orjson.dumps(payload), status_code=status_code, media_type="application/json")
