"""Nothing a caller holds aliases the store's state, either way.

The store handed out (and took in) the very dicts it folds: mutating a nested dict inside
the ``metadata`` given to ``create_session``, or inside a returned ``ChatSession``, changed
what later calls returned in that process, and the next boundary snapshot persisted a value
the log never held (``verify`` then flagged the snapshot). Here hypothesis builds nested
values, every one the caller gives or gets is mutated in place, and later reads, a fresh
store's reads, the snapshots and ``verify`` must all still show what was stored.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import eventlog
from eventlog import ChatMessage, ChatSession, Event, EventLog

from ._contract_base import ContractBase, fold

LEAVES = st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=3)
NESTED = st.recursive(LEAVES, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=3), inner, max_size=3), max_leaves=8)
OBJECTS = st.dictionaries(st.text(max_size=3), NESTED, max_size=3)
# At least one nested container, so that a shallow copy is not enough.
METADATA = st.tuples(OBJECTS, st.dictionaries(st.text(max_size=3), st.lists(NESTED, max_size=2)
                                              | st.dictionaries(st.text(max_size=2), NESTED,
                                                                max_size=2),
                                              min_size=1, max_size=2)).map(lambda p: {**p[0], **p[1]})
NAMES = st.lists(st.sampled_from(["a", "b", "c", "d"]), unique=True, max_size=3)

SNAPSHOT_EVERY = 3


def mutate(value: Any) -> int:
    """Change every dict and list inside ``value`` in place; return how many were changed."""
    changed = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
            item["~mutated"] = ["by the caller"]
            changed += 1
        elif isinstance(item, list):
            stack.extend(item)
            item.append({"~mutated": True})
            changed += 1
    return changed


def mutate_session(session: ChatSession) -> int:
    return mutate(session.metadata) + mutate(session.participants)


class AliasingContract(ContractBase):

    aliasing_settings = settings(max_examples=20, deadline=None,
                                 suppress_health_check=[HealthCheck.too_slow,
                                                        HealthCheck.function_scoped_fixture])

    def test_nothing_a_caller_holds_aliases_the_stores_state(self) -> None:
        @given(metadata=METADATA, people=NAMES, message_meta=METADATA, data=METADATA,
               extra=st.integers(0, SNAPSHOT_EVERY))
        @self.aliasing_settings
        def run(metadata: dict[str, Any], people: list[str], message_meta: dict[str, Any],
                data: dict[str, Any], extra: int) -> None:
            url = self.fresh_url()
            with eventlog.open(url, snapshot_every=SNAPSHOT_EVERY) as log:
                self._check_no_aliasing(url, log, metadata, people, message_meta, data, extra)

        run()

    def _check_no_aliasing(self, url: str, log: EventLog, metadata: dict[str, Any], people: list[str],
                           message_meta: dict[str, Any], data: dict[str, Any], extra: int) -> None:
        stored_meta, stored_people = copy.deepcopy(metadata), list(people)
        stored_message_meta, stored_data = copy.deepcopy(message_meta), copy.deepcopy(data)
        mutated = 0

        # Taken in: the arguments, mutated once the call has returned.
        created = log.create_session("s", participants=people, metadata=metadata)
        mutated += mutate(metadata) + mutate(people)
        # Handed back: every ChatSession, mutated as soon as the caller gets it.
        mutated += mutate_session(created)
        mutated += mutate_session(log.get_session("s"))
        mutated += mutate_session(log.create_session("s", exist_ok=True))
        for listed in log.list_sessions():
            mutated += mutate_session(listed)
        sent = ChatMessage(sender="a", content="hi", session_id="s", metadata=message_meta)
        returned = log.add_message(sent)
        mutated += mutate(message_meta)
        assert returned.metadata == stored_message_meta
        mutated += mutate(returned.metadata)
        batch = [ChatMessage(sender="b", content="x", session_id="s",
                             metadata=copy.deepcopy(stored_message_meta))]
        for message in log.add_messages(batch):
            mutated += mutate(message.metadata)
        for held in batch:
            mutated += mutate(held.metadata)
        for got in log.get_messages("s"):
            mutated += mutate(got.metadata)
        appended = log.append("s", "x", data)
        mutated += mutate(data) + mutate(appended.data)
        for event in log.append_many("s", [("y", copy.deepcopy(stored_data))] * (extra + 1)):
            mutated += mutate(event.data)
        for event in log.events("s"):
            mutated += mutate(event.data)
        mutated += mutate_session(log.get_session("s"))
        # Imported history: the caller's Event objects are theirs too.
        history = [Event(e.seq, e.type, e.ts, copy.deepcopy(e.data)) for e in log.events("s")]
        imported = log.import_events("copy", history)
        for event in history:
            mutated += mutate(event.data)
        mutated += mutate_session(imported)
        assert mutated >= 10

        # Later reads, in this process and in a fresh one, show what was stored ...
        expected = [(e.type, e.data) for e in _events(log, "s")]
        assert expected[0] == ("session.created", {"participants": stored_people,
                                                   "metadata": stored_meta})
        assert expected[1][1]["metadata"] == stored_message_meta
        assert expected[3] == ("x", stored_data)
        with eventlog.open(url, snapshot_every=SNAPSHOT_EVERY) as fresh:
            for sid in ("s", "copy"):
                events = _events(fresh, sid)
                assert [(e.type, e.data) for e in events] == expected
                assert log.get_session(sid) == fresh.get_session(sid) == fold(sid, events)
            # ... and the snapshots the appends left at their boundaries hold the same: the
            # next appends cross another boundary, where the writer's fold is saved.
            log.append_many("s", [("z", i) for i in range(SNAPSHOT_EVERY)])
            report = fresh.verify()
            assert report.ok, report.problems
            assert fresh.get_session("s") == fold("s", _events(fresh, "s"))
            assert fresh.get_session("s").metadata == stored_meta



def _events(log: EventLog, sid: str) -> list[Event]:
    return list(log.events(sid))
