"""Error responses: every failure is JSON `{"detail": ...}`, short, and free of server paths and tracebacks.

Two shapes of `detail`, both documented in the OpenAPI schema (`document_errors`):
- a list of field errors `[{"type", "loc", "msg", "input", "ctx"?}, ...]` for a body, path or query that does not fit
  its schema (422), as FastAPI's `HTTPValidationError`, except that `input` is a short excerpt of the value;
- a string for every other error (400, 401, 404, 409, 413, a 422 from a config the trainer rejects, 500, 503).

Why excerpts: FastAPI's own handler echoes the rejected value whole, so a 5 MB body came back as a 5 MB error, and
a value JSON cannot encode (NaN, a lone surrogate) turned the 422 into a 500.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)

EXCERPT_CHARS = 100
"""Longest excerpt of a rejected value in a field error (`input`, `ctx` values)."""
MESSAGE_CHARS = 1000
"""Longest error message (`msg` of a field error, a string `detail`)."""


# ------------------------------------------------------------------------------------------------ text
def clip(text: str, limit: int = EXCERPT_CHARS) -> str:
    """`text` as valid Unicode (lone surrogates become `\\udxxx` escapes), cut to `limit` characters with `…`."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def excerpt(value: Any, limit: int = EXCERPT_CHARS) -> Any:
    """A JSON-safe stand-in for `value`: itself when it is short and strict JSON, else a clipped text of it."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # 'nan', 'inf': JSON has no such numbers
    if isinstance(value, str):
        return clip(value, limit)
    if isinstance(value, bytes | bytearray):
        return clip(bytes(value[: limit * 4]).decode("utf-8", "backslashreplace"), limit)
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
        text.encode("utf-8")  # a lone surrogate anywhere inside fails here
    except (TypeError, ValueError):
        return clip(json.dumps(value, default=repr, ensure_ascii=False) if _jsonish(value) else repr(value), limit)
    return value if len(text) <= limit else clip(text, limit)


def _jsonish(value: Any) -> bool:
    return isinstance(value, dict | list | tuple | int | float)


def public_message(text: str, runs_dir: Path | None, limit: int = MESSAGE_CHARS) -> str:
    """`text` fit for a client: files named relative to the runs directory, valid Unicode, at most `limit` chars."""
    if runs_dir is not None:
        root = str(runs_dir)
        text = text.replace(root + "/", "").replace(root, "the runs directory")
    return clip(text, limit)


def _runs_dir(request: Request) -> Path | None:
    settings = getattr(request.app.state, "settings", None)
    return getattr(settings, "runs_dir", None)


# ------------------------------------------------------------------------------------------------ handlers
def field_error(item: Mapping[str, Any]) -> dict[str, Any]:
    """One pydantic/FastAPI error as we send it: type, loc, msg, input excerpt and (if any) a ctx of excerpts."""
    out: dict[str, Any] = {
        "type": str(item.get("type", "value_error")),
        "loc": [part if isinstance(part, int) else clip(str(part)) for part in item.get("loc", ())],
        "msg": clip(str(item.get("msg", "")), MESSAGE_CHARS),
        "input": excerpt(item.get("input")),
    }
    ctx = item.get("ctx")
    if isinstance(ctx, Mapping) and ctx:
        out["ctx"] = {clip(str(key)): excerpt(value if _jsonish(value) or isinstance(value, str) else str(value))
                      for key, value in ctx.items()}
    return out


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    """422 with the field errors, each value cut to an excerpt (never the whole body)."""
    assert isinstance(exc, RequestValidationError)
    return JSONResponse(status_code=422, content={"detail": [field_error(item) for item in exc.errors()]})


async def http_error(request: Request, exc: Exception) -> Response:
    """FastAPI's HTTPException answer, with a string detail made public (`public_message`)."""
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc.detail, str):
        exc = StarletteHTTPException(exc.status_code, public_message(exc.detail, _runs_dir(request)), exc.headers)
    return await http_exception_handler(request, exc)


async def config_error(request: Request, exc: Exception) -> JSONResponse:
    """A bad preset or override is the caller's mistake: 422 with the message, never a traceback."""
    return JSONResponse(status_code=422, content={"detail": public_message(str(exc), _runs_dir(request))})


async def unhandled_error(request: Request, exc: Exception) -> JSONResponse:
    """500: the traceback goes to the server log only; the caller gets the exception's type and first line."""
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    detail = f"internal error: {type(exc).__name__}: {first_line(exc)}"
    return JSONResponse(status_code=500, content={"detail": public_message(detail, _runs_dir(request))})


def first_line(exc: Exception, limit: int = 300) -> str:
    """The message up to its first line break (and before any traceback text an exception may carry), capped."""
    text = str(exc).split("Traceback (most recent call last)", 1)[0].strip()
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


# ------------------------------------------------------------------------------------------------ OpenAPI
_MESSAGE_SCHEMA = {
    "title": "ErrorMessage", "type": "object", "required": ["detail"],
    "properties": {"detail": {"title": "Detail", "type": "string", "description": "What went wrong, for humans."}},
}


def document_errors(app: FastAPI) -> None:
    """Make the app's OpenAPI schema say what the handlers above send.

    `HTTPValidationError.detail` becomes "a list of field errors or a string" (a rejected config is a 422 with a
    message), `input` is documented as an excerpt, every error response without a body schema gets
    `HTTPValidationError` (422) or `ErrorMessage` (the others), and every operation with a body documents the 413
    of `BodyLimitMiddleware`.
    """
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas["ErrorMessage"] = _MESSAGE_SCHEMA
        if "HTTPValidationError" in schemas:
            schemas["HTTPValidationError"]["properties"]["detail"] = {
                "title": "Detail", "anyOf": [
                    {"type": "array", "items": {"$ref": "#/components/schemas/ValidationError"}},
                    {"type": "string"},
                ],
                "description": "Field errors (a body, path or query that does not fit the schema), or one message "
                               "(a config the trainer rejects).",
            }
            schemas["HTTPValidationError"]["required"] = ["detail"]
        if "ValidationError" in schemas:
            schemas["ValidationError"]["properties"]["input"] = {
                "title": "Input", "description": f"The rejected value, or an excerpt of at most {EXCERPT_CHARS} "
                                                 "characters when it is long or not strict JSON."}
        message = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorMessage"}}}
        # A route that declares its own 422 loses FastAPI's body schema for it: both 422 shapes can come back.
        invalid = {"application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}}
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                if "requestBody" in operation:
                    responses.setdefault("413", {"description": "Request body over `TWM_MAX_BODY_BYTES`"})
                for code, response in responses.items():
                    if code[0] in "45" and "content" not in response:
                        response["content"] = invalid if code == "422" else message
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
