"""The peers that rewrite a whole session per message: cost per append grows with the session.

- ``json-rewrite``: the original design's JSON storage: one JSON file per session, loaded,
  appended to and rewritten whole on every message (stdlib ``json``, no indent: its fastest form).
- ``langchain-file``: langchain-community's ``FileChatMessageHistory`` (the ``bench`` extra).

Neither locks anything, so the concurrent workloads show what they lose.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _bench_data import DAY, Msg
from _bench_store import PARTICIPANTS, Spec, Store, Unsupported


class JsonRewriteStore(Store):
    """The original design: ``<sid>.json`` holds the session and all its messages, rewritten per message."""

    quadratic = True

    def __init__(self, spec: Spec) -> None:
        super().__init__(spec)
        self.root = Path(spec.location)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, sid: str) -> Path:
        return self.root / f"{sid}.json"

    def _load(self, path: Path) -> dict[str, Any]:
        with open(path, encoding="utf-8") as f:
            doc: dict[str, Any] = json.load(f)
        return doc

    def _save(self, path: Path, doc: dict[str, Any]) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(doc, f)
            if self.spec.durable:
                f.flush()
                os.fsync(f.fileno())

    def prepare(self, sid: str, msgs: Sequence[Msg]) -> list[Any]:
        return [{"id": m.id, "sender": m.sender, "recipient": m.recipient, "content": m.content,
                 "timestamp": m.ts, "message_type": "text"} for m in msgs]

    def create(self, sid: str, created_at: float) -> None:
        self._save(self._path(sid), {"session_id": sid, "participants": PARTICIPANTS,
                                     "created_at": created_at, "last_activity": created_at,
                                     "messages": []})

    def append(self, sid: str, item: Any) -> None:
        path = self._path(sid)
        doc = self._load(path)
        doc["messages"].append(item)
        doc["last_activity"] = max(doc["last_activity"], item["timestamp"])
        self._save(path, doc)

    def fill(self, sid: str, msgs: Sequence[Msg]) -> None:
        path = self._path(sid)
        doc = self._load(path)
        doc["messages"].extend(self.prepare(sid, msgs))
        doc["last_activity"] = max([doc["last_activity"], *(m.ts for m in msgs)])
        self._save(path, doc)

    def replay(self, sid: str) -> int:
        return len(self._load(self._path(sid))["messages"])

    def tail(self, sid: str, limit: int) -> int:
        return len(self._load(self._path(sid))["messages"][-limit:])

    def session_info(self, sid: str) -> object:
        doc = self._load(self._path(sid))
        return len(doc["messages"]), doc["last_activity"]

    def list_sessions(self) -> int:
        return len([self._load(p)["last_activity"] for p in self.root.iterdir() if p.suffix == ".json"])

    def cleanup(self, days: float) -> int:
        cutoff = time.time() - days * DAY
        removed = 0
        for path in list(self.root.iterdir()):
            if path.suffix == ".json" and self._load(path)["last_activity"] < cutoff:
                path.unlink()
                removed += 1
        return removed

    def read_back(self, sid: str) -> list[tuple[str, str] | None]:
        try:
            messages = self._load(self._path(sid))["messages"]
        except ValueError:
            return [None]  # the file itself is damaged: everything in it is lost
        return [(m["id"], m["content"]) for m in messages]


class LangchainFileStore(Store):
    """``FileChatMessageHistory``: a JSON list of messages per file, rewritten per message."""

    quadratic = True
    no_durable = "FileChatMessageHistory has no fsync option"

    def __init__(self, spec: Spec) -> None:
        super().__init__(spec)
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the package announces its own sunset on import
            from langchain_community.chat_message_histories import FileChatMessageHistory
            from langchain_core.messages import HumanMessage, messages_to_dict
        self._history_class = FileChatMessageHistory
        self._message_class = HumanMessage
        self._to_dict = messages_to_dict
        self.root = Path(spec.location)
        self.root.mkdir(parents=True, exist_ok=True)
        self._histories: dict[str, Any] = {}

    def _history(self, sid: str) -> Any:
        history = self._histories.get(sid)
        if history is None:
            history = self._histories[sid] = self._history_class(str(self.root / f"{sid}.json"))
        return history

    def prepare(self, sid: str, msgs: Sequence[Msg]) -> list[Any]:
        return [self._message_class(content=m.content, name=m.sender, id=m.id,
                                    additional_kwargs={"recipient": m.recipient, "ts": m.ts})
                for m in msgs]

    def create(self, sid: str, created_at: float) -> None:
        self._history(sid)

    def append(self, sid: str, item: Any) -> None:
        self._history(sid).add_message(item)

    def fill(self, sid: str, msgs: Sequence[Msg]) -> None:
        # Its own add_messages rewrites the file per message; write its format in one go instead.
        history = self._history(sid)
        items = json.loads(history.file_path.read_text()) + self._to_dict(self.prepare(sid, msgs))
        history.file_path.write_text(json.dumps(items))

    def replay(self, sid: str) -> int:
        return len(self._history(sid).messages)

    def tail(self, sid: str, limit: int) -> int:
        return len(self._history(sid).messages[-limit:])

    def session_info(self, sid: str) -> object:
        raise Unsupported("FileChatMessageHistory keeps no session state")

    def read_back(self, sid: str) -> list[tuple[str, str] | None]:
        try:
            return [(m.id, m.content) for m in self._history(sid).messages]
        except ValueError:
            return [None]


def check_langchain() -> str:
    try:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import langchain_community.chat_message_histories  # noqa: F401
    except ImportError:
        return "langchain-community is not installed (pip install '.[bench]')"
    return ""
