"""Session ids in URL paths: ``/api/sessions/{id}/...`` takes every valid id, percent-encoded.

An id may hold ``/``, ``%``, ``?``, ``#`` or anything else (issue 15), so a client sends it
as one percent-encoded path segment (``encodeURIComponent``, ``quote(id, safe="")``):
``user%3A42``, ``thread%2F123``. The ASGI server hands the router a decoded path, where
``thread%2F123`` has become two segments; so for these routes the router is given the
raw segment of the id instead (``scope["raw_path"]``), and each route decodes its
``session_id`` parameter, once, as UTF-8 (``decode_session_id``). A segment that is not
UTF-8 is refused (422, saying so), never taken for a different id.
"""

from __future__ import annotations

from urllib.parse import unquote, unquote_to_bytes

from starlette.types import Scope

from ._http import invalid

PREFIX = b"/api/sessions/"
_RAW = "eventlog.raw_session_id"


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
        raise invalid(f"the session id in the path, {segment!r}, is not UTF-8 once percent-decoded; "
                      "an id is text: percent-encode its UTF-8 bytes") from None


def with_raw_session_id(scope: Scope) -> Scope:
    """``scope`` with the id's segment of a session route left as the client encoded it."""
    raw = scope.get("raw_path")
    if not raw or not raw.startswith(PREFIX):
        return scope
    segment, slash, tail = raw[len(PREFIX):].partition(b"/")
    if not segment:
        return scope
    path = "/api/sessions/" + segment.decode("latin-1")
    if slash:
        path += "/" + unquote(tail.decode("latin-1"))
    return {**scope, "path": path, _RAW: True}
