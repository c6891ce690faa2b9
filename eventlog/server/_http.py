"""Request parsing, JSON responses and the mapping of eventlog's errors to HTTP statuses.

Every error leaves the server as ``{"error": <code>, "message": <text>}`` with the right
status; a traceback never does (it goes to the server's log).
"""

from __future__ import annotations

import hmac
import json
import math
import re
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from ..core._errors import (
    ConflictError,
    CorruptLogError,
    EventLogError,
    EventTooLargeError,
    InvalidInputError,
    LockTimeoutError,
    SessionExistsError,
    SessionNotFoundError,
    StorageError,
    StoreClosedError,
)

SEQ_MAX = 2**63 - 1
_DIGITS = re.compile(r"[0-9]{1,19}")


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class ApiError(Exception):
    """An error the API reports as JSON: ``status``, a short ``code`` and a readable message."""

    def __init__(self, status: int, code: str, message: str, *,
                 headers: Mapping[str, str] | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.extra = extra

    def response(self) -> JSONResponse:
        body = {"error": self.code, "message": self.message, **self.extra}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "bad_request", message)


def invalid(message: str) -> ApiError:
    return ApiError(422, "invalid_input", message)


def from_eventlog(exc: EventLogError) -> ApiError:
    """The one place eventlog's error tree becomes HTTP statuses."""
    if isinstance(exc, SessionNotFoundError):
        return ApiError(404, "session_not_found", str(exc), session_id=exc.session_id)
    if isinstance(exc, ConflictError):
        return ApiError(409, "conflict", str(exc), expected_seq=exc.expected_seq,
                        current_seq=exc.actual_seq)
    if isinstance(exc, SessionExistsError):
        return ApiError(409, "session_exists", str(exc), session_id=exc.session_id)
    if isinstance(exc, EventTooLargeError):
        return ApiError(413, "event_too_large", str(exc))
    if isinstance(exc, InvalidInputError):
        return ApiError(422, "invalid_input", str(exc))
    if isinstance(exc, LockTimeoutError):
        return ApiError(503, "busy", f"{exc}; try again", headers={"Retry-After": "1"})
    if isinstance(exc, StoreClosedError):
        return ApiError(503, "closed", "the server is shutting down", headers={"Retry-After": "1"})
    if isinstance(exc, CorruptLogError):
        # The data, not the request, is at fault; the message names session and seq.
        return ApiError(500, "corrupt_log", str(exc))
    if isinstance(exc, StorageError):
        return ApiError(500, "storage_error", f"the storage failed: {exc}")
    return ApiError(500, "internal_error", f"{type(exc).__name__}: {exc}")


def from_http(exc: HTTPException) -> ApiError:
    """Starlette's own 404/405 (no such route, method not served) as JSON, keeping ``Allow``."""
    codes = {404: "not_found", 405: "method_not_allowed"}
    message = {404: "no such resource",
               405: "method not allowed here"}.get(exc.status_code, str(exc.detail))
    return ApiError(exc.status_code, codes.get(exc.status_code, "http_error"), message,
                    headers=exc.headers)


# Query parameters -------------------------------------------------------------------------

def query_int(request: Request, name: str, *, default: int | None = None, minimum: int = 0,
              maximum: int = SEQ_MAX) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    return parse_int(name, raw, minimum=minimum, maximum=maximum)


def parse_int(name: str, raw: str, *, minimum: int = 0, maximum: int = SEQ_MAX) -> int:
    if _DIGITS.fullmatch(raw) is None:
        raise bad_request(f"{name} must be a whole number from {minimum} to {maximum}, not {raw!r}")
    value = int(raw)
    if not minimum <= value <= maximum:
        raise bad_request(f"{name} must be from {minimum} to {maximum}, not {value}")
    return value


def query_float(request: Request, name: str) -> float | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise bad_request(f"{name} must be a number (Unix seconds), not {raw[:40]!r}") from None
    if not math.isfinite(value):
        raise bad_request(f"{name} must be a finite number, not {raw[:40]!r}")
    return value


def query_bool(request: Request, name: str, *, default: bool) -> bool:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if raw.lower() in ("true", "1"):
        return True
    if raw.lower() in ("false", "0"):
        return False
    raise bad_request(f"{name} must be true or false, not {raw[:40]!r}")


# Bodies -----------------------------------------------------------------------------------

def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is out of range")
    return value


def _reject_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def decode_json(raw: bytes, what: str = "request body") -> Any:
    """Strict JSON: no NaN/Infinity, no duplicate keys, integers kept exact.

    The stdlib decoder rather than orjson here: orjson turns an integer beyond 64 bits
    into a float silently, and the library must see such a number to refuse it.
    """
    try:
        return json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite_float,
                          object_pairs_hook=_reject_pairs)
    except RecursionError:
        raise bad_request(f"{what}: JSON nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"{what} is not valid JSON: {exc}") from None


async def read_json(request: Request, limit: int) -> Any:
    """The body as JSON, refusing bodies over ``limit`` bytes before reading them whole."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise ApiError(415, "unsupported_media_type",
                       "send the body as JSON with Content-Type: application/json")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return decode_json(b"".join(chunks))


def too_large(limit: int) -> ApiError:
    return ApiError(413, "body_too_large", f"request body is over the limit of {limit} bytes")


# Auth -------------------------------------------------------------------------------------

def require_token(request: Request, token: str | None) -> None:
    """Writes need ``Authorization: Bearer <token>``; compared in constant time."""
    challenge = {"WWW-Authenticate": 'Bearer realm="eventlog"'}
    header = request.headers.get("authorization")
    if header is None:
        raise ApiError(401, "unauthorized", "this write needs Authorization: Bearer <token>",
                       headers=challenge)
    scheme, _, given = header.partition(" ")
    if (token is None or scheme.lower() != "bearer"
            or not hmac.compare_digest(given.strip().encode(), token.encode())):
        raise ApiError(401, "unauthorized", "the bearer token is wrong",
                       headers={"WWW-Authenticate": 'Bearer realm="eventlog", error="invalid_token"'})


# Small shape checks that mirror the OpenAPI schema ------------------------------------------

def expect_object(value: Any, what: str, allowed: frozenset[str], required: frozenset[str] = frozenset()
                  ) -> dict[str, Any]:
    if type(value) is not dict:
        raise invalid(f"{what} must be a JSON object")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise invalid(f"{what}: unknown field {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")
    missing = sorted(required - set(value))
    if missing:
        raise invalid(f"{what}: missing field {missing[0]!r}")
    return value


def expect_list(value: Any, what: str, *, min_items: int, max_items: int) -> list[Any]:
    if type(value) is not list:
        raise invalid(f"{what} must be a JSON array")
    if not min_items <= len(value) <= max_items:
        raise invalid(f"{what} must hold {min_items} to {max_items} items, not {len(value)}")
    return value
