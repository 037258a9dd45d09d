"""Who may talk to the server: a bearer token from an owner-only file, and loopback Host names.

The server listens on loopback, but that alone does not keep out another user of the
same machine (any local process can connect) or a web page (a browser will happily send
requests to 127.0.0.1, and DNS rebinding lets a page on ``evil.example`` talk to it under
its own name). The token stops the first, the Host check the second. No CORS headers are
ever sent, so a browser never lets a page read an answer either.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import secrets
import stat
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from pathlib import Path
from typing import Any

from ..atomic import atomic_write

log = logging.getLogger(__name__)

TOKEN_ENV = "RSCOVLM_TOKEN_FILE"
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})
_MIN_TOKEN_CHARS = 32

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


# --- the token file ---------------------------------------------------------------------


def token_path() -> Path:
    """Where the token lives: ``$RSCOVLM_TOKEN_FILE``, else the XDG config folder.

    The plugin reads the same file, so both sides must agree on this rule.
    """
    override = os.environ.get(TOKEN_ENV, "").strip()
    if override:
        return Path(override).expanduser()
    config_home = os.environ.get("XDG_CONFIG_HOME", "").strip()
    # The XDG spec says a relative value is invalid and must be ignored.
    base = Path(config_home) if config_home and os.path.isabs(config_home) else Path.home() / ".config"
    return base / "rscovlm" / "token"


def load_or_create_token(path: Path | None = None) -> str:
    """Return the token in ``path``, creating it (0600 in a 0700 folder) when absent.

    A token file that other users could read is treated as leaked: it is replaced by a
    new one with owner-only permissions, and a warning says so.
    """
    path = Path(path) if path is not None else token_path()
    _ensure_private_folder(path.parent)
    try:
        info = path.lstat()
    except FileNotFoundError:
        return _write_new_token(path)
    if not stat.S_ISREG(info.st_mode):
        from ..errors import UserError

        raise UserError(
            f"The token path {path} exists but is not a regular file: remove it, or point "
            f"{TOKEN_ENV} at another file."
        )
    if info.st_mode & 0o077:
        log.warning(
            "The token file %s could be read by other users (mode %o); it was replaced by a "
            "new token readable only by you. Reconnect the QGIS plugin.",
            path,
            stat.S_IMODE(info.st_mode),
        )
        return _write_new_token(path)
    token = path.read_text(encoding="utf-8").strip()
    if len(token) < _MIN_TOKEN_CHARS:
        log.warning("The token file %s held no usable token; a new one was written.", path)
        return _write_new_token(path)
    return token


def _ensure_private_folder(folder: Path) -> None:
    if folder.is_dir():
        return
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)  # mkdir's mode is filtered by the umask


def _write_new_token(path: Path) -> str:
    """Write a fresh token atomically, so a reader never sees a half-written file."""
    token = secrets.token_urlsafe(32)
    atomic_write(path, token + "\n", mode=0o600, fsync=True)  # owner-only from its creation
    return token


# --- checks on each request -------------------------------------------------------------


def bearer_matches(authorization: str | None, token: str) -> bool:
    """True when an ``Authorization`` header carries exactly ``token`` (constant time)."""
    if not authorization or not token:
        return False
    scheme, _, presented = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(presented.strip().encode("utf-8"), token.encode("utf-8"))


def host_name(host_header: str) -> str:
    """The name part of a Host header, lowercase, without port or IPv6 brackets."""
    host = host_header.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[1:end] if end > 0 else host
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit() and ":" not in name:
        return name
    return host


def allowed_hosts_for(bind_host: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """Loopback names, plus the address the user explicitly bound to, plus ``extra``."""
    names = set(LOOPBACK_HOSTS)
    bind = host_name(bind_host)
    if bind not in WILDCARD_HOSTS:
        names.add(bind)
    names.update(host_name(name) for name in extra)
    return frozenset(names)


def is_loopback(bind_host: str) -> bool:
    """Whether binding to ``bind_host`` keeps the server on this machine only."""
    import ipaddress

    name = host_name(bind_host)
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class GuardMiddleware:
    """Pure ASGI gate in front of the app: Host check (400), then bearer token (401).

    It runs before routing, so unknown paths, the OpenAPI schema and preflight
    ``OPTIONS`` requests are all covered; ``public_paths`` (liveness) skip the token only.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str,
        allowed_hosts: Iterable[str] = LOOPBACK_HOSTS,
        public_paths: Iterable[str] = ("/health",),
    ) -> None:
        if not token:
            raise ValueError("the server needs a non-empty token")
        self.app = app
        self.token = token
        self.allowed_hosts = frozenset(host_name(h) for h in allowed_hosts)
        self.public_paths = frozenset(public_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":  # the API has none; refuse rather than guard
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        host = headers.get("host")
        if host is None or host_name(host) not in self.allowed_hosts:
            await send_error(
                send,
                400,
                "This server only answers requests addressed to a loopback name such as "
                "127.0.0.1 or localhost; the Host header was "
                f"{host!r}.",
            )
            return
        if scope.get("path") in self.public_paths:
            await self.app(scope, receive, send)
            return
        if not bearer_matches(headers.get("authorization"), self.token):
            await send_error(
                send,
                401,
                "A valid token is required: send 'Authorization: Bearer <token>' with the token "
                "from the file the server printed at start-up.",
                extra_headers=[(b"www-authenticate", b'Bearer realm="rscovlm"')],
            )
            return
        await self.app(scope, receive, send)


def _headers(scope: Scope) -> dict[str, str]:
    """Request headers by lowercase name; a repeated header keeps its first value."""
    found: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", []):
        name = raw_name.decode("latin-1").lower()
        found.setdefault(name, raw_value.decode("latin-1"))
    return found


async def send_error(
    send: Send,
    status: int,
    detail: str,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """Answer with the API's error body ``{"detail": sentence}`` straight from ASGI."""
    body = json.dumps({"detail": detail}).encode("utf-8")
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode("ascii")),
        *(extra_headers or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
