"""Input checks that run before anything is written.

A session id is any str of 1 to 255 characters that is valid Unicode (no lone
surrogates) and holds no control character (category Cc): ids are kept exactly as
given, and each backend maps them to its own names safely (the file backend's mapping
is ``backends/files/_names.py``). Event data must survive a JSON
round trip unchanged: orjson would silently turn NaN into null and happily encode
dataclasses, datetimes, UUIDs and enums, so the walk below admits only the plain
JSON types, by exact type.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from ._codec import is_tombstone
from ._errors import InvalidEventError, InvalidInputError, InvalidSessionIdError

LEGACY_ID_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
"""The ids eventlog took before issue 15: a file store keeps such a session's directory
under the id itself, which later releases still read (see ``backends/files/_names.py``)."""
MAX_ID_CHARS = 255
_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f]")
EVENT_TYPE_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._:/-]{0,127}")
RESERVED_PREFIXES = ("session.", "message")
MAX_DEPTH = 200  # orjson refuses nesting deeper than 255; fail first, with our message.
_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1  # orjson's range: int64 and uint64.
MOST_SECONDS = 2**31
"""The longest duration option (68 years): beyond it a backend's waits and expiries overflow
(a lock's timeout in C, Redis's expiry in milliseconds)."""


_checked_ids: set[str] = set()


def check_session_id(session_id: object) -> str:
    # Every call checks an id; remembering the good ones skips the checks on hot paths.
    if type(session_id) is str and session_id in _checked_ids:
        return session_id
    if not isinstance(session_id, str):
        raise InvalidSessionIdError(f"invalid session id {shown(session_id)}: a session id is a str, "
                                    f"not {type(session_id).__name__}")
    problem = _id_problem(session_id)
    if problem:
        raise InvalidSessionIdError(f"invalid session id {_short(session_id)}: {problem}")
    if type(session_id) is str:  # not a subclass: its __eq__/__hash__ could lie
        if len(_checked_ids) > 100_000:
            _checked_ids.clear()
        _checked_ids.add(session_id)
    return session_id


def _id_problem(session_id: str) -> str:
    if not session_id:
        return "it is empty (use 1 to 255 characters)"
    if len(session_id) > MAX_ID_CHARS:
        return f"{len(session_id)} characters, over the {MAX_ID_CHARS} allowed"
    found = _CONTROL_RE.search(session_id)
    if found:
        return (f"it holds the control character U+{ord(found.group()):04X} at index "
                f"{found.start()} (no character of category Cc is allowed)")
    try:
        session_id.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"it holds a lone surrogate at index {exc.start}, which is not valid Unicode"
    return ""


def _short(session_id: str) -> str:
    # repr escapes control characters and surrogates, so the message is safe to print.
    return repr(session_id) if len(session_id) <= 80 else f"{session_id[:40]!r}..."


def check_event_type(event_type: object, *, allow_reserved: bool = False) -> str:
    if not isinstance(event_type, str) or EVENT_TYPE_RE.fullmatch(event_type) is None:
        raise InvalidEventError(
            f"invalid event type {event_type!r}: use 1 to 128 ASCII letters, digits or '._:/-'"
        )
    if not allow_reserved and event_type.startswith(RESERVED_PREFIXES):
        raise InvalidEventError(
            f"event type {event_type!r} is reserved: 'session.*' and 'message*' belong to "
            "eventlog (post messages with add_message)"
        )
    return event_type


def check_text(name: str, value: object, *, optional: bool = False, empty: bool = False) -> None:
    if value is None and optional:
        return
    if type(value) is not str:
        raise InvalidEventError(f"{name} must be a str, not {type(value).__name__}")
    if not empty and not value:
        raise InvalidEventError(f"{name} must not be empty")


# Unix seconds from 1970-01-01 up to (not including) 10000-01-01 UTC. Outside it a timestamp is
# almost surely in the wrong unit (nanoseconds, milliseconds) or garbage, and no reader can
# show it as a date: Python's datetime and JavaScript's Date both fail on it (issue 20).
TS_MIN = 0.0
TS_END = 253_402_300_800.0


def check_timestamp(name: str, value: object) -> float:
    kind = type(value)
    if kind is float:
        ts: float = value  # type: ignore[assignment]
    elif kind is int:
        # Compared as an int first: float() of 10**400 raises a raw OverflowError.
        if not -(2**53) <= value <= 2**53:  # type: ignore[operator]
            raise InvalidEventError(_out_of_range(name, value))
        ts = float(value)  # type: ignore[arg-type]
    else:
        raise InvalidEventError(f"{name} must be a number of Unix seconds, not {value!r}")
    if not TS_MIN <= ts < TS_END:  # also refuses NaN and the infinities
        raise InvalidEventError(_out_of_range(name, value) if math.isfinite(ts) else
                                f"{name} must be a finite number of Unix seconds, not {value!r}")
    return ts


def _out_of_range(name: str, value: object) -> str:
    if type(value) is int and abs(value) >= 10**30:  # repr() of a huge int is long, or refused
        shown = f"an integer of {value.bit_length()} bits"
    else:
        shown = repr(value)
    hint = "" if value < 0 else " (nanoseconds or milliseconds, perhaps?)"  # type: ignore[operator]
    return f"{name} must be Unix seconds between 1970 and 9999 (0 to {TS_END:.0f}), not {shown}{hint}"


def finite(value: float) -> bool:
    """Whether an int or float is a finite float: an int past float's range (``10**400``)
    is not, and ``math.isfinite`` raised OverflowError for it."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def shown(value: object) -> str:
    """``repr`` for error messages, but an int past 64 bits is named by its size: one of
    thousands of digits would drown the message, and Python refuses to print one of over
    4300 digits at all (ValueError)."""
    if type(value) is int and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"
    return repr(value)


def _check_number(item: float, what: str, path: str) -> None:
    if type(item) is int:
        if not _INT_MIN <= item <= _INT_MAX:
            raise InvalidEventError(f"{what}{path}: integer {shown(item)} does not fit 64 bits")
    elif not math.isfinite(item):
        raise InvalidEventError(f"{what}{path}: {item!r} is not valid JSON")


def check_not_tombstone(data: Any) -> None:
    """Refuse new data shaped as a tombstone: only ``redact`` writes those (a stored one
    would pass for an event that was redacted)."""
    if type(data) is dict and len(data) == 1 and "redacted" in data and is_tombstone(data):
        raise InvalidEventError("data of the form {\"redacted\": {reason, seq, sha256}} is a "
                                "tombstone, which only redact() writes")


def check_json(value: Any, what: str = "event data") -> None:
    """Refuse anything that is not plain JSON, naming the path of the first offender."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, path, depth = stack.pop()
        kind = type(item)
        if kind is str or kind is bool or item is None:
            continue
        if kind is int or kind is float:
            _check_number(item, what, path)
            continue
        if depth >= MAX_DEPTH:
            raise InvalidEventError(f"{what}{path}: nested deeper than {MAX_DEPTH} levels")
        if kind is dict:
            for key, sub in item.items():
                if type(key) is not str:
                    raise InvalidEventError(
                        f"{what}{path}: key {key!r} is a {type(key).__name__}; JSON keys are strings"
                    )
                stack.append((sub, f"{path}[{key!r}]", depth + 1))
            continue
        if kind is list or kind is tuple:
            for index, sub in enumerate(item):
                stack.append((sub, f"{path}[{index}]", depth + 1))
            continue
        raise InvalidEventError(
            f"{what}{path}: {kind.__name__} is not plain JSON "
            "(use dict, list, str, int, float, bool or None)"
        )


def check_seconds(name: str, value: object, *, positive: bool = False) -> float:
    """A duration option (``lock_timeout``, ``retry_for``, ``ttl``): a number of seconds,
    finite, at least 0 (above 0 if ``positive``) and at most ``MOST_SECONDS``."""
    if (type(value) not in (int, float) or not finite(value)  # type: ignore[arg-type]
            or not 0 <= value <= MOST_SECONDS or (positive and value == 0)):  # type: ignore[operator]
        least = "above 0" if positive else "from 0"
        raise InvalidInputError(f"{name} must be a number of seconds {least} to {MOST_SECONDS}, "
                                f"not {shown(value)}")
    return float(value)  # type: ignore[arg-type]


def check_mode(value: object) -> int:
    """A file mode option: permission bits as an int (``0o600``)."""
    if type(value) is not int or not 0 <= value <= 0o777:
        raise InvalidInputError(f"mode must be permission bits from 0o000 to 0o777, not {shown(value)}")
    return value


def loads_strict(raw: bytes | str) -> Any:
    """Decode JSON as the store takes it, or raise ``InvalidInputError`` naming the problem:
    no NaN or Infinity, no number past float's range, no integer past 64 bits, no key twice.

    For input from outside (imports, command-line JSON). orjson, the store's own decoder,
    reads an integer past 64 bits as a float and keeps the last of a duplicate key's values,
    both silently; what append refuses, an import must refuse too. The stdlib decoder, with
    hooks, sees both."""
    try:
        return json.loads(raw, parse_int=_strict_int, parse_float=_strict_float,
                          parse_constant=_refuse_constant, object_pairs_hook=_unique_keys)
    except InvalidInputError:
        raise
    except RecursionError:
        raise InvalidInputError("JSON nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"not valid JSON ({exc})") from None


def _strict_int(text: str) -> int:
    # 20 digits hold every 64-bit integer; longer ones are refused before int() reads them
    # (it refuses over 4300 digits itself, with a message about Python's limits).
    value = int(text) if len(text) <= 21 else None
    if value is None or not _INT_MIN <= value <= _INT_MAX:
        shown_text = text if len(text) <= 40 else f"{text[:20]}... ({len(text)} digits)"
        raise InvalidInputError(f"integer {shown_text} does not fit 64 bits")
    return value


def _strict_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise InvalidInputError(f"number {text[:40]} is out of range")
    return value


def _refuse_constant(name: str) -> Any:
    raise InvalidInputError(f"{name} is not valid JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        seen: set[str] = set()
        for key, _value in pairs:
            if key in seen:
                raise InvalidInputError(f"duplicate key {key!r}")
            seen.add(key)
    return found


def check_key(key: object, version: int, what: str = "idempotency_key") -> None:
    """An idempotency key, checked; refused by a store of format version 1, whose records
    have exactly five members: the ``"k"`` member that holds a key is version 2's, and a
    version 1 store must stay readable by the releases that wrote it (they take a record
    with a sixth member for damage)."""
    check_text(what, key)
    if version == 1:
        raise InvalidEventError(
            f"{what}: this store is of record format version 1, which can't hold idempotency "
            "keys (they are format version 2's); move it to version 2 with `eventlog copy`")
