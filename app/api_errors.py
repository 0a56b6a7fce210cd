"""Errors of the HTTP API: always JSON {"error": {"reason", "message"}} with a fitting status code."""
from __future__ import annotations

import logging
import tempfile
from typing import Any, Callable, Coroutine

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from app.errors import Conflict, EngineUnavailable, InvalidInput, NotFound, StorageError, Stopping, error_reason

log = logging.getLogger("jambadocs.api")

_REASON_BY_STATUS = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                     405: "method_not_allowed", 409: "conflict", 413: "too_large",
                     422: "invalid_request", 500: "internal", 503: "unavailable"}
_APP_STATUS = ((NotFound, 404), (Conflict, 409), (InvalidInput, 400), (EngineUnavailable, 503),
               (StorageError, 507), (Stopping, 503))
# ingest.IngestError.reason -> HTTP status
_INGEST_STATUS = {"too_large": 413, "unsupported": 415}


class ApiError(Exception):
    """An error the API reports as is."""

    def __init__(self, status: int, reason: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.reason, self.message, self.headers = status, reason, message, headers


def error_body(reason: str, message: str) -> dict:
    return {"error": {"reason": reason, "message": message}}


def error_response(exc: BaseException) -> JSONResponse:
    """The JSON response for any exception raised while handling a request."""
    err = as_api_error(exc)
    return JSONResponse(error_body(err.reason, err.message), status_code=err.status,
                        headers=err.headers)


def as_api_error(exc: BaseException) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, RequestValidationError):
        return ApiError(422, "invalid_request", _validation_message(exc))
    if isinstance(exc, HTTPException):
        cause = exc.__cause__
        if exc.status_code == 400 and isinstance(cause, OSError):   # spooling an upload part failed
            return ApiError(507, "storage", f"the upload cannot be received in the temp folder "
                            f"{tempfile.gettempdir()}: {cause.strerror or cause}; free space there, "
                            "or point TMPDIR at a larger disk")
        return ApiError(exc.status_code, _REASON_BY_STATUS.get(exc.status_code, "error"),
                        str(exc.detail), dict(exc.headers) if exc.headers else None)
    if type(exc).__name__ == "IngestError":
        reason = error_reason(exc)
        return ApiError(_INGEST_STATUS.get(reason, 422), reason, str(exc))
    for cls, status in _APP_STATUS:
        if isinstance(exc, cls):
            return ApiError(status, error_reason(exc), str(exc))
    if isinstance(exc, ValueError):  # services reject bad input (names, sizes) with ValueError
        return ApiError(400, "bad_request", str(exc))
    log.exception("unexpected error in the API", exc_info=exc)
    return ApiError(500, "internal", f"{type(exc).__name__}: {exc}")


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(x) for x in err.get("loc", ()) if x not in ("body",))
        parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg")))
    return "; ".join(parts) or "invalid request"


class JsonErrorRoute(APIRoute):
    """Route class that turns every exception of its handler into the JSON error shape.

    (An APIRouter cannot install app-wide exception handlers; this keeps the error format the
    same whichever FastAPI app the router is mounted in.)
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:  # noqa: BLE001 -- reported to the client as JSON
                return error_response(exc)

        return handle
