"""Session ids in URL paths: ``/api/sessions/{id}/...`` takes every valid id, percent-encoded.

An id may hold ``/``, ``%``, ``?``, ``#`` or anything else (issue 15), so a client sends it
as one percent-encoded path segment (``encodeURIComponent``, ``quote(id, safe="")``):
``user%3A42``, ``thread%2F123``. The ASGI server hands the router a decoded path, where
``thread%2F123`` has become two segments; so for these routes the router is given the
raw segment of the id instead (``scope["raw_path"]``), and each route decodes its
``session_id`` parameter, once, as UTF-8 (``decode_session_id``). A segment that is not
UTF-8 is refused (422, saying so), never taken for a different id.

The ids ``.`` and ``..`` are dot segments, which browsers resolve before sending (``%2E%2E``
too: the URL standard treats it as ``..``), so ``/api/sessions/../graph`` arrives as
``/api/graph``. Every route is therefore also served in a query form,
``/api/session/{route}?session_id={id}`` (``with_raw_session_id`` turns it into the path
form), and ``Location`` names these two ids that way (``session_location``).
"""

from __future__ import annotations

from urllib.parse import quote, quote_from_bytes, unquote, unquote_to_bytes

from starlette.types import Scope

from ._http import ApiError, bad_request, invalid

PREFIX = b"/api/sessions/"
QUERY_FORM = b"/api/session"
_RAW = "eventlog.raw_session_id"
_DOT_SEGMENTS = (".", "..")


def session_location(sid: str) -> str:
    """The URL of a session, as a ``Location`` header names it."""
    if sid in _DOT_SEGMENTS:
        return f"{QUERY_FORM.decode()}?session_id={quote(sid, safe='')}"
    return f"{PREFIX.decode()}{quote(sid, safe='')}"


def decode_session_id(scope: Scope) -> None:
    """Decode the route's raw ``session_id`` parameter in place (once per request)."""
    params = scope.get("path_params")
    if not params or "session_id" not in params or not scope.get(_RAW):
        return  # no raw path to go by: the server already decoded the path
    scope[_RAW] = False  # decoded now; never twice
    segment = params["session_id"]
    try:
        params["session_id"] = unquote_to_bytes(segment.encode("latin-1")).decode("utf-8")
    except UnicodeError:
        raise invalid(f"the session id {segment!r} is not UTF-8 once percent-decoded; "
                      "an id is text: percent-encode its UTF-8 bytes") from None


def with_raw_session_id(scope: Scope) -> Scope | ApiError:
    """``scope`` with the id's segment of a session route left as the client encoded it
    (taken from the query in the query form), or the error a query form without one id is."""
    raw = scope.get("raw_path")
    if not raw:
        return scope
    if raw == QUERY_FORM or raw.startswith(QUERY_FORM + b"/"):
        return _from_query(scope, raw[len(QUERY_FORM):])
    if not raw.startswith(PREFIX):
        return scope
    segment, slash, tail = raw[len(PREFIX):].partition(b"/")
    if not segment:
        return scope
    return _routed(scope, segment.decode("latin-1"), slash + tail)


def _routed(scope: Scope, segment: str, tail: bytes) -> Scope:
    path = PREFIX.decode() + segment + unquote(tail.decode("latin-1"))
    return {**scope, "path": path, _RAW: True}


def _from_query(scope: Scope, tail: bytes) -> Scope | ApiError:
    """``/api/session/{tail}?session_id={id}&...`` as ``/api/sessions/{id}/{tail}?...``."""
    given: list[bytes] = []
    kept: list[bytes] = []
    for part in scope.get("query_string", b"").split(b"&"):
        name, _, value = part.partition(b"=")
        if _form_decoded(name) == b"session_id":
            given.append(_form_decoded(value))
        elif part:
            kept.append(part)
    if len(given) != 1 or not given[0]:
        return bad_request(f"{QUERY_FORM.decode()}{tail.decode('latin-1')} needs the session id as "
                           f"one query parameter session_id=, given {len(given)} (empty: "
                           f"{sum(not g for g in given)})")
    routed = _routed(scope, quote_from_bytes(given[0], safe=""), tail)
    routed["query_string"] = b"&".join(kept)  # the routes take no session_id of their own
    return routed


def _form_decoded(text: bytes) -> bytes:
    """A query string's name or value as bytes: ``+`` is a space, as in every form encoding."""
    return unquote_to_bytes(text.replace(b"+", b" "))
