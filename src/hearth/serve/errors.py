"""Every error the server sends, in OpenAI's shape: {"error": {"message", "type", "code", "param"}}.

FastAPI's own handlers (validation, HTTP errors, crashes) are replaced so no response ever
carries FastAPI's {"detail": ...} shape or a stack trace; details of crashes go to the log only.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from hearth.errors import CapabilityError, ConstraintError, ContextWindowError
from hearth.index.store import NotInIndexError

log = logging.getLogger("hearth.serve")

INTERNAL_MESSAGE = "internal error: the server could not handle this request (see its log)"


class APIError(Exception):
    """An error with its HTTP status and OpenAI-style type/code; raise it from any route."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.code, self.param)

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)

    def encoded(self) -> bytes:
        return json.dumps(self.body()).encode()


class RequestTooLarge(StarletteHTTPException):
    """Raised while reading a body past the limit; an HTTPException so FastAPI passes it on."""

    def __init__(self, limit_bytes: int) -> None:
        super().__init__(413, f"the request body is larger than {limit_bytes} bytes")
        self.limit_bytes = limit_bytes


def error_body(
    message: str, type: str, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "code": code, "param": param}}


def too_large(limit_bytes: int) -> APIError:
    mib = limit_bytes / 2**20
    return APIError(
        413,
        f"the request body is larger than the server's limit of {mib:g} MiB; send less, or "
        "start the server with a higher --max-upload-mb",
        code="request_too_large",
    )


def model_not_found(model: str, known: list[str]) -> APIError:
    return APIError(
        404,
        f"the model {model!r} does not exist on this server; GET /v1/models lists the served "
        f"ones ({', '.join(known)})",
        code="model_not_found",
        param="model",
    )


def unsupported(param: str, why: str) -> APIError:
    return APIError(400, f"{param}: {why}", code="unsupported_parameter", param=param)


def overloaded(retry_after: int = 1) -> APIError:
    return APIError(
        429,
        "the server is overloaded: too many requests are waiting for a generation slot; "
        f"retry in {retry_after} s",
        type="rate_limit_error",
        code="server_overloaded",
        headers={"Retry-After": str(retry_after)},
    )


def from_exception(exc: BaseException) -> APIError:
    """The client-facing error for an exception raised while generating or searching."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, ContextWindowError):
        return APIError(400, str(exc), code="context_length_exceeded", param="messages")
    if isinstance(exc, NotInIndexError):
        return APIError(404, str(exc), code="not_found")
    if isinstance(exc, ConstraintError):
        return APIError(400, str(exc), code="invalid_schema", param="response_format")
    if isinstance(exc, CapabilityError):
        return APIError(400, str(exc), code="model_not_supported")
    log.error("request failed", exc_info=(type(exc), exc, exc.__traceback__))
    return APIError(500, INTERNAL_MESSAGE, type="server_error", code="internal_error")


def _validation_message(errors: list[dict[str, Any]]) -> tuple[str, str | None]:
    parts, first_param = [], None
    for err in errors[:5]:
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        where = ".".join(loc) or "body"
        first_param = first_param or (where if loc else None)
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more, first_param


async def _on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        ctx = next((e.get("ctx") or {} for e in errors if e.get("type") == "json_invalid"), {})
        detail = f" ({ctx['error']})" if "error" in ctx else ""
        return APIError(
            400, f"the request body is not valid JSON{detail}", code="invalid_json"
        ).response()
    message, param = _validation_message(errors)
    return APIError(422, message, code="invalid_request_body", param=param).response()


_HTTP_CODES = {
    400: ("invalid_request_error", "bad_request"),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    413: ("invalid_request_error", "request_too_large"),
}


async def _on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if isinstance(exc, RequestTooLarge):
        return too_large(exc.limit_bytes).response()
    kind, code = _HTTP_CODES.get(exc.status_code, ("invalid_request_error", "http_error"))
    if exc.status_code >= 500:
        kind, code = "server_error", "internal_error"
    message = exc.detail if isinstance(exc.detail, str) else "request failed"
    if exc.status_code == 404 and message == "Not Found":
        message = f"no route {request.method} {request.url.path}; see /docs for the API"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    return APIError(exc.status_code, message, kind, code, headers=exc.headers).response()


async def _on_api_error(request: Request, exc: APIError) -> JSONResponse:
    return exc.response()


async def _on_crash(request: Request, exc: Exception) -> JSONResponse:
    return from_exception(exc).response()


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(APIError, _on_api_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_crash)
