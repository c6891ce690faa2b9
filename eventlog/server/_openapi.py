"""The OpenAPI 3.1 document, written by hand to say exactly what the server does.

It is built per server, so a read-only server documents no write route and a server
without ``allow_delete`` documents no DELETE. The tests check it against every route
served, and a property-based fuzzer checks every answer against it.
"""

from __future__ import annotations

from typing import Any

from ._context import Settings
from ._http import SEQ_MAX

# Any text of 1 to 255 characters without a control character (Unicode category Cc), as
# the store takes it (issue 15); the legacy pattern here refused ids the store keeps.
SESSION_ID_PATTERN = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"
EVENT_TYPE_PATTERN = "^[A-Za-z0-9_][A-Za-z0-9._:/-]{0,127}$"
RESERVED_TYPE_PATTERN = "^(session\\.|message)"
STATIC_FILES = {"app.js": "text/javascript", "app.css": "text/css", "icon.svg": "image/svg+xml",
                "util.js": "text/javascript", "api.js": "text/javascript",
                "sessions.js": "text/javascript", "transcript.js": "text/javascript",
                "render.js": "text/javascript", "graph.js": "text/javascript",
                "session.js": "text/javascript"}

Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def _obj(properties: dict[str, Schema], required: tuple[str, ...] = (), *, closed: bool = True) -> Schema:
    schema: Schema = {"type": "object", "properties": properties, "required": list(required)}
    if closed:
        schema["additionalProperties"] = False
    return schema


def _array(items: Schema, **limits: int) -> Schema:
    return {"type": "array", "items": items, **{_camel(k): v for k, v in limits.items()}}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


_INT = {"type": "integer", "minimum": 0}
_SEQ = {"type": "integer", "minimum": 0, "maximum": SEQ_MAX}
_TEXT = {"type": "string", "minLength": 1}
_JSON_OBJECT = {"type": "object"}

SCHEMAS: dict[str, Schema] = {
    "Error": _obj({"error": {"type": "string"}, "message": {"type": "string"}}, ("error", "message"),
                  closed=False),
    "SessionId": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": SESSION_ID_PATTERN},
    "EventType": {"type": "string", "allOf": [{"pattern": EVENT_TYPE_PATTERN},
                                              {"not": {"pattern": RESERVED_TYPE_PATTERN}}]},
    "VerifyStatus": _obj({"ok": {"type": "boolean"}, "events_checked": _INT,
                          "problems": _array({"type": "string"}), "checked_at": {"type": "number"}},
                         ("ok", "events_checked", "problems", "checked_at")),
    "Session": _obj({
        "session_id": _ref("SessionId"),
        "participants": _array({"type": "string"}),
        "created_at": {"type": "number"},
        "last_activity": {"type": "number"},
        "message_count": _INT,
        "last_seq": _INT,
        "metadata": _JSON_OBJECT,
        "size_bytes": _nullable(_INT),
        "verify": _nullable(_ref("VerifyStatus")),
        "forked_from": _nullable(_obj({"session_id": _ref("SessionId"), "seq": _INT},
                                      ("session_id", "seq"))),
        "rewinds": _array(_array(_INT, min_items=2, max_items=2)),
    }, ("session_id", "participants", "created_at", "last_activity", "message_count", "last_seq",
        "metadata", "size_bytes", "verify", "forked_from", "rewinds")),
    "ForkRequest": _obj({"new_session_id": _ref("SessionId"), "at_seq": _INT}, ()),
    "RewindRequest": _obj({"to_seq": _INT, "reason": _nullable({"type": "string"}),
                           "expected_seq": _INT}, ("to_seq",)),
    "SessionPage": _obj({
        "sessions": _array(_ref("Session")), "total": _INT, "offset": _INT, "limit": _INT,
        "unreadable": _array(_obj({"session_id": _ref("SessionId"), "error": {"type": "string"}},
                                  ("session_id", "error"))),
        "next_cursor": _nullable({"type": "string"}),
    }, ("sessions", "total", "offset", "limit", "unreadable", "next_cursor")),
    "ShownEvent": _obj({
        "seq": _INT, "type": {"type": "string"}, "ts": {"type": "number"}, "data": {},
        "size": _INT, "clipped": {"type": "boolean"}, "content_length": _INT,
        "preview": {"type": "string"},
    }, ("seq", "type", "ts", "data", "size", "clipped")),
    "TranscriptPage": _obj({
        "session_id": _ref("SessionId"), "last_seq": _INT, "anchor_seq": _nullable(_INT),
        "events": _array(_ref("ShownEvent")), "older_before_seq": _nullable(_INT),
        "newer_after_seq": _nullable(_INT), "events_scanned": _INT,
    }, ("session_id", "last_seq", "anchor_seq", "events", "older_before_seq", "newer_after_seq",
        "events_scanned")),
    "SearchResults": _obj({
        "hits": _array(_obj({"session_id": _ref("SessionId"), "event": _ref("ShownEvent"),
                             "fields": _array({"type": "string"}), "snippet": {"type": "string"}},
                            ("session_id", "event", "fields", "snippet"))),
        "next_cursor": _nullable({"type": "string"}), "events_scanned": _INT,
    }, ("hits", "next_cursor", "events_scanned")),
    "Graph": _obj({
        "session_id": _ref("SessionId"), "last_seq": _INT, "participants": _array({"type": "string"}),
        "pairs": _array(_obj({"sender": {"type": "string"}, "recipient": _nullable({"type": "string"}),
                              "count": _INT}, ("sender", "recipient", "count"))),
        "types": _array(_obj({"type": {"type": "string"}, "count": _INT}, ("type", "count"))),
    }, ("session_id", "last_seq", "participants", "pairs", "types")),
    "NewSession": _obj({
        "session_id": _nullable(_ref("SessionId")),
        "participants": _nullable(_array(_TEXT, unique_items=True)),
        "metadata": _nullable(_JSON_OBJECT),
        "created_at": _nullable({"type": "number"}),
        "exist_ok": {"type": "boolean"},
    }),
    "Message": _obj({
        "seq": _INT, "id": {"type": "string"}, "sender": {"type": "string"},
        "recipient": _nullable({"type": "string"}), "content": {"type": "string"},
        "timestamp": {"type": "number"}, "message_type": {"type": "string"},
        "metadata": _nullable(_JSON_OBJECT),
    }, ("seq", "id", "sender", "recipient", "content", "timestamp", "message_type", "metadata")),
    "NewMessage": _obj({
        "sender": _TEXT, "content": {"type": "string"}, "recipient": _nullable(_TEXT), "id": _TEXT,
        "timestamp": {"type": "number"}, "message_type": _TEXT, "metadata": _nullable(_JSON_OBJECT),
    }, ("sender", "content")),
    "MessageBatch": _obj({"messages": _array(_ref("NewMessage"), min_items=1, max_items=10_000)},
                         ("messages",)),
    "MessageList": _obj({"messages": _array(_ref("Message"))}, ("messages",)),
    "MessagesPosted": _obj({"messages": _array(_ref("Message")), "last_seq": _INT},
                           ("messages", "last_seq")),
    "Event": _obj({"seq": _INT, "type": {"type": "string"}, "ts": {"type": "number"}, "data": {},
                   "key": {"type": "string"}},
                  ("seq", "type", "ts", "data")),
    "NewEvent": _obj({"type": _ref("EventType"), "data": {}}, ("type",)),
    "EventBatch": _obj({"events": _array(_ref("NewEvent"), min_items=1, max_items=10_000)},
                       ("events",)),
    "EventsPosted": _obj({"events": _array(_ref("Event")), "last_seq": _INT}, ("events", "last_seq")),
    "SessionVerify": _obj({"session_id": _ref("SessionId"), "ok": {"type": "boolean"},
                           "events_checked": _INT, "problems": _array({"type": "string"}),
                           "checked_at": {"type": "number"}},
                          ("session_id", "ok", "events_checked", "problems", "checked_at")),
    "StoreVerify": _obj({"ok": {"type": "boolean"}, "sessions_checked": _INT, "events_checked": _INT,
                         "problems": _array({"type": "string"})},
                        ("ok", "sessions_checked", "events_checked", "problems")),
    "Stats": _obj({
        "version": {"type": "string"}, "sessions": _INT, "unreadable_sessions": _INT,
        "events": _INT, "messages": _INT,
        "bytes": _INT, "uptime_seconds": {"type": "number", "minimum": 0},
        "read_only": {"type": "boolean"}, "allow_delete": {"type": "boolean"},
        "live_streams": _INT,
        "appended_events": _obj({"message": _INT, "event": _INT, "session": _INT},
                                ("message", "event", "session")),
    }, ("version", "sessions", "unreadable_sessions", "events", "messages", "bytes", "uptime_seconds",
        "read_only",
        "allow_delete", "live_streams", "appended_events")),
    "Checkpoint": _obj({
        "format": {"type": "string"}, "session_id": _nullable(_ref("SessionId")), "seq": _INT,
        "digest": {"type": "string"}, "time": {"type": "number"},
        "heads": _array({"type": "array", "prefixItems": [_ref("SessionId"), _INT,
                                                          {"type": "string"}],
                         "minItems": 3, "maxItems": 3}),
        "signature": {"type": "string"},
    }, ("format", "session_id", "seq", "digest", "time")),
    "Redaction": _obj({"seqs": _array({"type": "integer", "minimum": 1}, min_items=1,
                                      max_items=100_000),
                       "reason": _TEXT}, ("seqs", "reason")),
    "Redacted": _obj({"event": _ref("Event")}, ("event",)),
    "Health": _obj({"status": {"type": "string", "enum": ["ok"]}, "version": {"type": "string"}},
                   ("status", "version")),
}

_REASONS = {
    400: "The request could not be parsed (bad JSON, a query parameter that is not a number), or "
         "its Host header names a host this server does not answer to.",
    401: "A write without the right bearer token.",
    404: "No such session.",
    409: "expected_seq did not match (the body carries current_seq), or the session exists; "
         "for a stream, a resume point beyond the session's last seq (beyond_head).",
    413: "The body, or one encoded event, is over the size limit.",
    415: "The body is not sent as application/json.",
    422: "The input breaks a rule of the store (ids, names, types, plain JSON data).",
    500: "A damaged log or a failed disk; the message names the session.",
    503: "A lock could not be had in time, too many live streams, or the server is stopping.",
}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): {"description": _REASONS[code], "content": {
        "application/json": {"schema": _ref("Error")}}} for code in codes}


def _ok(schema_name: str, code: int = 200, description: str = "OK") -> dict[str, Any]:
    return {str(code): {"description": description,
                        "content": {"application/json": {"schema": _ref(schema_name)}}}}


def _query(name: str, schema: Schema, description: str) -> Schema:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


_SID = {"name": "session_id", "in": "path", "required": True, "schema": _ref("SessionId")}
_EXPECTED = _query("expected_seq", _SEQ, "Append only if the session's last seq is this (else 409).")
_READ_ERRORS = (400, 404, 422, 500, 503)
_WRITE_ERRORS = (400, 401, 404, 409, 413, 415, 422, 500, 503)


_CLIP = _query("clip", {"type": "integer", "minimum": 16, "maximum": 1 << 20},
               "Characters of content (or of data as JSON) shown before it is clipped (2000).")
_PAGE_PARAMS = [
    _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "Events a page (100)."),
    _query("max_bytes", {"type": "integer", "minimum": 1024, "maximum": 16 << 20},
           "JSON bytes a page at most (1 MiB); at least one event."),
    _CLIP,
    _query("before_seq", _SEQ, "The newest events before this seq."),
    _query("after_seq", _SEQ, "Alone: the oldest events after this seq; with before_seq: a bound."),
    _query("around_seq", _SEQ, "A page with this seq in its middle."),
    _query("at_ts", {"type": "number"}, "A page around the first event at or after this time."),
]
_FILTER_PARAMS = [
    _query("q", {"type": "string", "maxLength": 1000},
           "Text to find (any case) in content, sender, recipient, message type; type and data."),
    _query("sender", {"type": "string"}, "Only messages from this sender."),
    _query("recipient", {"type": "string"}, "Only messages to this recipient."),
    _query("to_everyone", {"type": "boolean"}, "Only messages to everyone."),
    {"name": "type", "in": "query", "required": False, "style": "form", "explode": True,
     "schema": {"type": "array", "items": {"type": "string"}, "maxItems": 20},
     "description": "Only events of these types (repeat)."},
]


def _body(*schemas: str) -> dict[str, Any]:
    schema = _ref(schemas[0]) if len(schemas) == 1 else {"oneOf": [_ref(s) for s in schemas]}
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _operations(settings: Settings) -> dict[str, dict[str, Any]]:
    writes = not settings.read_only
    secure: list[dict[str, list[str]]] = [{"bearerAuth": []}]
    paths: dict[str, dict[str, Any]] = {
        "/": {"get": {"operationId": "viewer", "summary": "The web viewer", "responses": {
            "200": {"description": "The viewer's page", "content": {"text/html": {"schema": {
                "type": "string"}}}}, **_errors(400)}}},
        "/static/{name}": {"get": {"operationId": "viewerFile", "summary": "A file of the web viewer",
            "parameters": [{"name": "name", "in": "path", "required": True,
                            "schema": {"type": "string", "enum": sorted(STATIC_FILES)}}],
            "responses": {"200": {"description": "The file", "content": {
                kind: {"schema": {"type": "string"}} for kind in sorted(set(STATIC_FILES.values()))}},
                **_errors(400, 404)}}},
        "/healthz": {"get": {"operationId": "health", "summary": "Liveness",
                             "responses": {**_ok("Health"), **_errors(400)}}},
        "/metrics": {"get": {"operationId": "metrics", "summary": "Prometheus metrics", "responses": {
            "200": {"description": "Prometheus text format 0.0.4",
                    "content": {"text/plain": {"schema": {"type": "string"}}}},
            **_errors(400, 500, 503)}}},
        "/openapi.json": {"get": {"operationId": "openapi", "summary": "This document", "responses": {
            "200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {
                "type": "object"}}}}, **_errors(400)}}},
        "/api/stats": {"get": {"operationId": "stats", "summary": "Store totals",
                               "responses": {**_ok("Stats"), **_errors(400, 500, 503)}}},
        "/api/verify": {"get": {"operationId": "verifyStore", "summary": "Verify every session",
                                "responses": {**_ok("StoreVerify"), **_errors(400, 500, 503)}}},
        "/api/sessions": {"get": {
            "operationId": "listSessions", "summary": "Sessions, newest activity first (paged)",
            "parameters": [
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "Page size (100)."),
                _query("cursor", {"type": "string"}, "Go on after the page that returned it."),
                _query("offset", _SEQ, "Sessions to skip (without cursor)."),
                _query("q", {"type": "string", "maxLength": 200},
                       "Only sessions whose id or a participant contains this (any case)."),
                _query("participant", {"type": "string"}, "Only sessions with this participant."),
                _query("metadata", {"type": "string"},
                       "A JSON object: only sessions whose metadata has these top-level values."),
                _query("prefix", {"type": "string"}, "Only ids starting with this."),
                _query("active_after", {"type": "number"}, "Only last activity after this (Unix s)."),
                _query("active_before", {"type": "number"}, "Only last activity before this."),
                _query("order", {"type": "string", "enum": ["last_activity", "created_at", "session_id"]},
                       "The order (last_activity)."),
                _query("descending", {"type": "boolean"},
                       "Newest first (default true, false for order=session_id)."),
                _query("sort", {"type": "string", "enum": ["last_activity", "session_id"]},
                       "Older form: last_activity (newest first) or session_id."),
            ],
            "responses": {**_ok("SessionPage"), **_errors(400, 422, 500, 503)}}},
        "/api/sessions/{session_id}": {"get": {
            "operationId": "getSession", "summary": "One session's state", "parameters": [_SID],
            "responses": {**_ok("Session"), **_errors(*_READ_ERRORS)}}},
        "/api/sessions/{session_id}/messages": {"get": {
            "operationId": "getMessages",
            "summary": "Messages with after_seq < seq < before_seq: the newest `limit`, oldest first",
            "parameters": [_SID,
                           _query("limit", {"type": "integer", "minimum": 0, "maximum": 1000},
                                  "How many of the newest to return (100)."),
                           _query("before_seq", _SEQ, "Only messages before this seq."),
                           _query("after_seq", _SEQ, "Only messages after this seq.")],
            "responses": {**_ok("MessageList"), **_errors(*_READ_ERRORS)}}},
        "/api/sessions/{session_id}/events": {"get": {
            "operationId": "getEvents", "summary": "The audit replay as NDJSON, one event a line",
            "parameters": [_SID, _query("after_seq", _SEQ, "Start after this seq (0)."),
                           _query("limit", {"type": "integer", "minimum": 1, "maximum": SEQ_MAX},
                                  "At most this many events (all).")],
            "responses": {"200": {"description": "Events in seq order, one JSON object a line",
                                  "content": {"application/x-ndjson": {"schema": {"type": "string"}}}},
                          **_errors(*_READ_ERRORS)}}},
        "/api/sessions/{session_id}/stream": {"get": {
            "operationId": "streamEvents",
            "summary": "Live events as Server-Sent Events (id = seq); resumes from Last-Event-ID",
            "parameters": [
                _SID, _query("after_seq", _SEQ, "Start after this seq (default: from now)."),
                {"name": "Last-Event-ID", "in": "header", "required": False,
                 "schema": {"type": "string", "pattern": "^[0-9]{1,19}$"},
                 "description": "The last seq seen; wins over after_seq."}],
            "responses": {"200": {"description": "An endless event stream",
                                  "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                          **_errors(*_READ_ERRORS, 409)}}},
        "/api/sessions/{session_id}/transcript": {"get": {
            "operationId": "getTranscript",
            "summary": "A page of every event (by count and bytes, long content clipped), newest "
                       "first unless after_seq alone; around a seq or a time; filtered",
            "parameters": [_SID, *_PAGE_PARAMS, *_FILTER_PARAMS],
            "responses": {**_ok("TranscriptPage"), **_errors(*_READ_ERRORS)}}},
        "/api/sessions/{session_id}/events/{seq}": {"get": {
            "operationId": "getEvent", "summary": "One event, whole",
            "parameters": [_SID, {"name": "seq", "in": "path", "required": True,
                                  "schema": {"type": "integer", "minimum": 0}}],
            "responses": {**_ok("Event"), **_errors(*_READ_ERRORS)}}},
        "/api/sessions/{session_id}/graph": {"get": {
            "operationId": "getGraph", "summary": "Who talks to whom: messages per sender and "
                                                  "recipient pair, and events per type",
            "parameters": [_SID], "responses": {**_ok("Graph"), **_errors(*_READ_ERRORS)}}},
        "/api/sessions/{session_id}/export": {"get": {
            "operationId": "exportSession", "summary": "The session as a file (as eventlog export)",
            "parameters": [_SID, _query("format", {"type": "string", "enum": ["jsonl", "json", "markdown"]},
                                        "jsonl (default), json or markdown.")],
            "responses": {"200": {"description": "The file, as an attachment", "content": {
                kind: {"schema": {"type": "string"}} for kind in
                ("application/x-ndjson", "application/json", "text/markdown")}},
                **_errors(*_READ_ERRORS)}}},
        "/api/search": {"get": {
            "operationId": "search", "summary": "Events matching a text and filters, in one session "
                                                "or across all, paged by cursor",
            "parameters": [
                _query("session_id", _ref("SessionId"), "Only this session."),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "Hits a page (50)."),
                _query("cursor", {"type": "string"}, "Go on after the page that returned it."),
                _query("descending", {"type": "boolean"}, "Newest first (false)."),
                _CLIP, *_FILTER_PARAMS],
            "responses": {**_ok("SearchResults"), **_errors(*_READ_ERRORS)}}},
        "/api/checkpoint": {"get": {
            "operationId": "storeCheckpoint",
            "summary": "A checkpoint of every session's head, under one Merkle root",
            "responses": {**_ok("Checkpoint"), **_errors(400, 500, 503)}}},
        "/api/sessions/{session_id}/checkpoint": {"get": {
            "operationId": "sessionCheckpoint", "summary": "A checkpoint of one session's head",
            "parameters": [_SID], "responses": {**_ok("Checkpoint"), **_errors(*_READ_ERRORS)}}},
        "/api/sessions/{session_id}/verify": {"get": {
            "operationId": "verifySession", "summary": "Check one session's digests, seqs and snapshots",
            "parameters": [_SID], "responses": {**_ok("SessionVerify"), **_errors(*_READ_ERRORS)}}},
    }
    if writes:
        paths["/api/sessions"]["post"] = {
            "operationId": "createSession", "summary": "Create a session (its creation is seq 1)",
            "security": secure, "requestBody": _body("NewSession"),
            "responses": {**_ok("Session", 201, "Created"),
                          **_ok("Session", 200, "It existed, and exist_ok was true"),
                          **_errors(400, 401, 409, 413, 415, 422, 500, 503)}}
        paths["/api/sessions/{session_id}/messages"]["post"] = {
            "operationId": "postMessages", "summary": "Post one message, or a batch stored atomically",
            "security": secure, "parameters": [_SID, _EXPECTED],
            "requestBody": _body("NewMessage", "MessageBatch"),
            "responses": {**_ok("MessagesPosted", 201, "Stored"),
                          **_ok("MessagesPosted", 200, "Every message's id was stored already "
                                "(a retry): the stored messages, nothing written"),
                          **_errors(*_WRITE_ERRORS)}}
        paths["/api/sessions/{session_id}/fork"] = {"post": {
            "operationId": "forkSession", "summary": "Copy a session's history up to a seq into "
            "a new session", "security": secure, "parameters": [_SID],
            "requestBody": _body("ForkRequest"),
            "responses": {**_ok("Session", 201, "Forked"), **_errors(*_WRITE_ERRORS)}}}
        paths["/api/sessions/{session_id}/rewind"] = {"post": {
            "operationId": "rewindSession", "summary": "Hide the events after a seq (appends a "
            "session.rewound event)", "security": secure, "parameters": [_SID],
            "requestBody": _body("RewindRequest"),
            "responses": {**_ok("Event", 201, "Rewound"), **_errors(*_WRITE_ERRORS)}}}
        paths["/api/sessions/{session_id}/events"]["post"] = {
            "operationId": "postEvents", "summary": "Append one custom event, or a batch atomically",
            "security": secure, "parameters": [_SID, _EXPECTED],
            "requestBody": _body("NewEvent", "EventBatch"),
            "responses": {**_ok("EventsPosted", 201, "Stored"), **_errors(*_WRITE_ERRORS)}}
        if settings.allow_redact:
            paths["/api/sessions/{session_id}/redact"] = {"post": {
                "operationId": "redactEvents",
                "summary": "Erase the data of events, keeping the chain (see the README)",
                "security": secure, "parameters": [_SID], "requestBody": _body("Redaction"),
                "responses": {**_ok("Redacted", 201, "Redacted"),
                              **_errors(400, 401, 404, 413, 415, 422, 500, 503)}}}
        if settings.allow_delete:
            paths["/api/sessions/{session_id}"]["delete"] = {
                "operationId": "deleteSession", "summary": "Delete a session whole",
                "security": secure, "parameters": [_SID],
                "responses": {"204": {"description": "Deleted"},
                              **_errors(400, 401, 404, 422, 500, 503)}}
    return paths


def build_openapi(settings: Settings, version: str) -> dict[str, Any]:
    mode = "read-only" if settings.read_only else "writes need a bearer token"
    return {
        "openapi": "3.1.0",
        "info": {"title": "eventlog", "version": version,
                 "description": f"Durable, append-only chat session logs over HTTP ({mode}). "
                                "Every /api/sessions/{session_id}/... route is also served as "
                                "/api/session/...?session_id=..., for the ids . and .. that "
                                "clients resolve as dot segments in a path."},
        "paths": _operations(settings),
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}},
        },
    }
