"""Request hygiene, as pure ASGI middleware (no buffering where none is needed, nothing run in a thread):

- `HostCheckMiddleware`: 400 unless the `Host` header names this machine or a configured name (DNS rebinding);
- `BodyLimitMiddleware`: 413 for a body over the limit, from `Content-Length` up front or while a chunked body
  streams in, so a huge body is never read whole;
- `StrictJSONMiddleware`: 422 for JSON that Python's `json` reads but JSON does not have (`NaN`, `Infinity`,
  numbers past float range such as `1e400`) and for strings with lone surrogates (`"\\ud800"`). Such values pass
  schemas typed `Any` or `str` and then fail where they are written (SQLite, config.json, the response);
- `LocalOnlyPagesMiddleware`: a Content-Security-Policy of 'self' on the `/docs` and `/redoc` pages, so their
  assets come from this server only (ReDoc's bundle would still fetch a logo from cdn.redoc.ly).

`create_app` stacks them host check → body limit → strict JSON → FastAPI. Every answer is `{"detail": ...}` JSON.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.errors import clip, excerpt
from backend.settings import normalize_host

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


# ------------------------------------------------------------------------------------------------ host
def host_name(header: str | None) -> str | None:
    """The host part of a `Host` header, normalised (`[::1]:8000` → `::1`); None when absent or malformed."""
    if not header:
        return None
    header = header.strip()
    if header.startswith("["):  # IPv6 literal, with or without a port
        end = header.find("]")
        return normalize_host(header[: end + 1]) if end > 1 else None
    name = header.rsplit(":", 1)[0] if header.count(":") == 1 else header
    return normalize_host(name) if name and ":" not in name else None


class HostCheckMiddleware:
    """Refuse HTTP and WebSocket requests whose `Host` is not in `allowed` (`"*"` in it: accept any)."""

    def __init__(self, app: ASGIApp, allowed: Iterable[str]) -> None:
        self.app = app
        self.allowed = frozenset(normalize_host(host) for host in allowed)
        self.allow_any = "*" in self.allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.allow_any or scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = host_name(Headers(scope=scope).get("host"))
        if host in self.allowed:
            await self.app(scope, receive, send)
            return
        shown = "no Host header" if host is None else f"Host {clip(host, 60)!r}"
        detail = f"{shown} is not allowed: call this backend by a loopback name, or add the name to TWM_ALLOWED_HOSTS"
        if scope["type"] == "websocket":  # a close before accept is a 403 to the client
            await send({"type": "websocket.close", "code": 1008, "reason": "host not allowed"})
            return
        await JSONResponse({"detail": detail}, status_code=400)(scope, receive, send)


# ------------------------------------------------------------------------------------------------ body size
class BodyTooLarge(HTTPException):
    """Raised from `receive` once a streamed body passes the limit (FastAPI's handlers answer it with 413 JSON)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body over {limit} bytes (TWM_MAX_BODY_BYTES)")


class BodyLimitMiddleware:
    """413 for a request body over `max_bytes`: at once when `Content-Length` says so, else while it streams."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            # The app never runs, so nothing reads the body: the server drops it with the connection.
            await self._too_large(scope, receive, send)
            return

        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, watched_send)
        except BodyTooLarge:
            if started:  # too late for a 413: let the server end the connection
                raise
            await self._too_large(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        # No `Connection: close`: the server drains an unread body itself, and a client still sending could miss
        # an answer that came with a reset connection.
        response = JSONResponse({"detail": BodyTooLarge(self.max_bytes).detail}, status_code=413)
        await response(scope, receive, send)


# ------------------------------------------------------------------------------------------------ docs pages
LOCAL_ONLY_POLICY = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
                     "img-src 'self' data:; worker-src 'self' blob:; connect-src 'self'")
"""The pages' inline start-up scripts and styles are allowed; anything from another host is not even asked for."""


class LocalOnlyPagesMiddleware:
    """Adds `LOCAL_ONLY_POLICY` as the Content-Security-Policy of the responses to `paths`."""

    def __init__(self, app: ASGIApp, paths: Iterable[str]) -> None:
        self.app, self.paths = app, frozenset(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return

        async def with_policy(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"content-security-policy", LOCAL_ONLY_POLICY.encode())]}
            await send(message)

        await self.app(scope, receive, with_policy)


# ------------------------------------------------------------------------------------------------ strict JSON
def _is_json(headers: Headers) -> bool:
    media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def json_problem(value: Any) -> dict[str, Any] | None:
    """The first value JSON cannot carry inside a parsed body, as a field error (loc from the body root); else None.

    Iterative, so a deeply nested body cannot exhaust the stack.
    """
    stack: list[tuple[tuple[int | str, ...], Any]] = [(("body",), value)]
    while stack:
        loc, item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return {"type": "finite_number", "loc": list(loc), "input": excerpt(item),
                    "msg": "Input should be a finite number (JSON has no NaN or Infinity, and 1e400 overflows)"}
        if isinstance(item, str) and not _is_text(item):
            return {"type": "string_unicode", "loc": list(loc), "input": excerpt(item),
                    "msg": "Input should be valid Unicode text (it holds a lone surrogate)"}
        if isinstance(item, dict):
            for key, child in reversed(item.items()):
                if not _is_text(key):
                    return {"type": "string_unicode", "loc": [*loc, clip(key)], "input": clip(key),
                            "msg": "Key should be valid Unicode text (it holds a lone surrogate)"}
                stack.append(((*loc, key), child))
        elif isinstance(item, list):
            stack.extend(((*loc, index), child) for index, child in reversed(list(enumerate(item))))
    return None


def _is_text(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _strictly_fine(value: Any) -> bool:
    """Fast path: C-speed strict encoding succeeds for the common, clean body."""
    try:
        json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8")
    except (ValueError, UnicodeEncodeError, RecursionError):
        return False
    return True


class StrictJSONMiddleware:
    """422 for a JSON body holding a non-finite number or a lone surrogate; the body is replayed to the app.

    The body is buffered, which is bounded because `BodyLimitMiddleware` runs first. A body that does not parse
    goes on untouched: FastAPI's own 422 (`json_invalid`) says where it breaks.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS or not _is_json(Headers(scope=scope)):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: nothing to check
                await self.app(scope, _replay([message], receive), send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        problem = _problem(body) if body else None
        if problem is not None:
            await JSONResponse({"detail": [problem]}, status_code=422)(scope, receive, send)
            return
        await self.app(scope, _replay([{"type": "http.request", "body": body, "more_body": False}], receive), send)


def _problem(body: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):  # not JSON (or absurdly deep): FastAPI answers it
        return None
    return None if _strictly_fine(value) else json_problem(value)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A `receive` that yields `messages` first, then defers to the real one (for `http.disconnect`)."""
    pending = list(messages)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay
