"""Per-deployment token for servers bound to a non-loopback address.

``ng_run`` makes a random token for each deployment and gives it to every server
(``NGYM_DEPLOYMENT_TOKEN``); every inter-server call carries it in ``x-ngym-token``. A server
bound to anything but loopback refuses requests without it (401). On loopback (the default) no
token is needed. Clients on other machines read it from the token file ``ng_run`` writes
(``~/.cache/ngym/deployments/<head port>.token``, mode 0600) or from the environment.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

TOKEN_ENV = "NGYM_DEPLOYMENT_TOKEN"
TOKEN_HEADER = "x-ngym-token"


def is_loopback(host: str | None) -> bool:
    if not host or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def token_file(head_port: int) -> Path:
    return Path(os.environ.get("NGYM_HOME", Path.home() / ".cache" / "ngym")) / "deployments" / f"{head_port}.token"


def write_token_file(head_port: int, token: str) -> Path:
    path = token_file(head_port)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token)
    return path


def current_token(head_port: int | None = None) -> str | None:
    """The deployment token from the environment, else from the token file of ``head_port``."""
    token = os.environ.get(TOKEN_ENV)
    if token:
        return token
    if head_port is not None:
        path = token_file(head_port)
        if path.is_file():
            return path.read_text().strip() or None
    return None


class TokenMiddleware:
    """Refuse (401) any HTTP request whose ``x-ngym-token`` is not the deployment token."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = next((v for k, v in scope.get("headers", ()) if k == TOKEN_HEADER.encode()), b"")
            if not hmac.compare_digest(given, self.token):
                body = b'{"error":"missing or wrong x-ngym-token: this server is bound to a non-loopback address and only accepts calls from its deployment (the token is in NGYM_DEPLOYMENT_TOKEN or the token file ng_run printed)"}'
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
