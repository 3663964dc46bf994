"""Hostile and malformed webhook bodies against the real ingest app (R2, F12).

Every body of the corpus must be answered 4xx with nothing enqueued (or 2xx with everything
ignored, for events of types stsync does not route), the app must stay healthy afterwards
(``/healthz`` 200), and a good delivery must still go through. The app runs in-process with
fakeredis for the dedupe keys and a collector instead of Celery, as in tests/worker/test_ingest.py.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from fastapi.testclient import TestClient

from ingest.app import create_ingest_app
from sandbox import credentials
from tests.conftest import DEMO_CONFIG, demo_env
from worker.settings import Settings, load_settings

SECRET = credentials.WEBHOOK_SECRET
INT64_MAX = 2**63 - 1


def event(etype: Any = "company", eid: Any = 5, action: Any = "created") -> dict[str, Any]:
    return {"action": action, "timestamp": 1, "entity": {"type": etype, "id": eid}}


def delivery(*events: Any, message_id: Any = "m-1") -> dict[str, Any]:
    return {"messageId": message_id, "timestamp": "1", "data": list(events)}


def raw(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def _deep(depth: int) -> bytes:
    return (
        b'{"messageId":"m","data":[{"action":"created","entity":{"type":"company","id":1,'
        b'"x":' + b"[" * depth + b"]" * depth + b"}}]}"
    )


#: name -> body; every one must be refused (4xx) and enqueue nothing
REFUSED: dict[str, bytes] = {
    "empty": b"",
    "whitespace": b"   \n",
    "truncated": raw(delivery(event()))[:-7],
    "truncated inside a string": b'{"messageId": "m-1", "data": [{"action": "crea',
    "not json": b"messageId=m-1&data=company:5",
    "xml": b"<?xml version='1.0'?><delivery><id>5</id></delivery>",
    "array at top level": raw([delivery(event())]),
    "string at top level": raw("company 5"),
    "number at top level": b"5",
    "null at top level": b"null",
    "missing messageId": raw({"data": [event()]}),
    "missing data": raw({"messageId": "m-1"}),
    "missing entity": raw(delivery({"action": "created"})),
    "missing entity id": raw(delivery({"action": "created", "entity": {"type": "company"}})),
    "missing entity type": raw(delivery({"action": "created", "entity": {"id": 5}})),
    "missing action": raw(delivery({"entity": {"type": "company", "id": 5}})),
    "null messageId": raw(delivery(event(), message_id=None)),
    "null data": raw({"messageId": "m-1", "data": None}),
    "null event": raw(delivery(None)),
    "null entity": raw(delivery({"action": "created", "entity": None})),
    "null id": raw(delivery(event(eid=None))),
    "empty messageId": raw(delivery(event(), message_id="")),
    "messageId over 128 chars": raw(delivery(event(), message_id="m" * 129)),
    "messageId a number object": raw(delivery(event(), message_id={"n": 1})),
    "data an object": raw({"messageId": "m-1", "data": {"0": event()}}),
    "data a string": raw({"messageId": "m-1", "data": "company:5"}),
    "event a list": raw(delivery([event()])),
    "id a word": raw(delivery(event(eid="five"))),
    "id a fraction": raw(delivery(event(eid=5.5))),
    "id zero": raw(delivery(event(eid=0))),
    "id negative": raw(delivery(event(eid=-5))),
    "id 2**63 (int64 overflow)": raw(delivery(event(eid=INT64_MAX + 1))),
    "id 2**64": raw(delivery(event(eid=2**64))),
    "id 10**30": raw(delivery(event(eid=10**30))),
    "id 1e400 (float overflow)": b'{"messageId":"m","data":[{"action":"created",'
    b'"entity":{"type":"company","id":1e400}}]}',
    "id NaN": b'{"messageId":"m","data":[{"action":"created","entity":{"type":"company",'
    b'"id":NaN}}]}',
    "id Infinity": b'{"messageId":"m","data":[{"action":"created","entity":{"type":"company",'
    b'"id":Infinity}}]}',
    "id -Infinity": b'{"messageId":"m","data":[{"action":"created","entity":{"type":"company",'
    b'"id":-Infinity}}]}',
    "id a list": raw(delivery(event(eid=[5]))),
    "id an object": raw(delivery(event(eid={"id": 5}))),
    "type a number": raw(delivery(event(etype=3))),
    "type a list": raw(delivery(event(etype=["company"]))),
    "type empty": raw(delivery(event(etype=""))),
    "type over 64 chars": raw(delivery(event(etype="c" * 65))),
    "action unknown": raw(delivery(event(action="exploded"))),
    "action a number": raw(delivery(event(action=1))),
    "action null": raw(delivery(event(action=None))),
    "one bad event among good ones": raw(delivery(event(eid=5), event(eid="x"), event(eid=7))),
    "more events than a delivery may carry (10k)": raw(
        delivery(*[event(eid=i) for i in range(1, 10_001)])
    ),
    "deep nesting (100k)": _deep(100_000),
    "deep nesting (1k)": _deep(1_000),
    "invalid utf-8": b'{"messageId":"m-\xff\xfe","data":[]}',
    "lone surrogate escape in the id": b'{"messageId":"m","data":[{"action":"created",'
    b'"entity":{"type":"company","id":"\\ud800"}}]}',
    "NUL in the middle": b'{"messageId":"m-1",\x00"data":[]}',
    "trailing garbage": raw(delivery(event())) + b"}{",
    "two documents": raw(delivery(event())) + b"\n" + raw(delivery(event(eid=6))),
    "comment": b'{"messageId":"m-1", /* hi */ "data":[]}',
    "single quotes": b"{'messageId': 'm-1', 'data': []}",
    "duplicated messageId key": b'{"messageId":"m-1","messageId":"m-2","data":'
    + raw([event()])
    + b"}",
    "duplicated entity id key": b'{"messageId":"m-1","data":[{"action":"created","entity":'
    b'{"type":"company","id":5,"id":6}}]}',
    "duplicated data key": b'{"messageId":"m-1","data":[],"data":' + raw([event()]) + b"}",
}

#: name -> body; acknowledged (2xx) with every event ignored: nothing stsync routes
IGNORED: dict[str, bytes] = {
    "unknown entity type": raw(delivery(event(etype="spaceship"))),
    "unicode entity type": raw(delivery(event(etype="cömpany"))),
    "emoji entity type": raw(delivery(event(etype="\U0001f525"))),
    "zero-width joiner in the type": raw(delivery(event(etype="comp\u200dany"))),
    "upper-case type": raw(delivery(event(etype="COMPANY"))),
    "deletions only": raw(delivery(event(action="deleted"), event("job", 9, "deleted"))),
    "no events": raw(delivery()),
    "unicode messageId, unknown type": raw(delivery(event(etype="x"), message_id="мсг-🔥")),
}


class Harness:
    def __init__(self, settings: Settings) -> None:
        self.sent: list[tuple[str, tuple[Any, ...]]] = []
        self.redis = fakeredis.FakeRedis()
        self.stored: list[tuple[str, str, str]] = []
        self.app = create_ingest_app(
            settings,
            redis_client=self.redis,
            send=self._send,
            ledger_ping=lambda: None,
            record_wakeups=self.stored.extend,
        )
        self.client = TestClient(self.app, raise_server_exceptions=False)

    def _send(self, name: str, args: tuple[Any, ...]) -> None:
        self.sent.append((name, args))

    def post(self, body: bytes, content_type: str = "application/json") -> Any:
        return self.client.post(
            f"/webhooks/servicetrade/{SECRET}", content=body, headers={"content-type": content_type}
        )


@pytest.fixture(scope="module")
def h(tmp_path_factory: pytest.TempPathFactory) -> Harness:
    tmp: Path = tmp_path_factory.mktemp("ingest")
    env = demo_env(tmp, infolink_url="sqlite://", database_url="sqlite://")
    return Harness(load_settings(DEMO_CONFIG, env))


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_hostile_body_is_refused_and_enqueues_nothing(h: Harness, name: str) -> None:
    before, stored = len(h.sent), len(h.stored)
    started = time.perf_counter()
    r = h.post(REFUSED[name])
    elapsed = time.perf_counter() - started
    assert 400 <= r.status_code < 500, (name, r.status_code, r.text[:300])
    assert len(h.sent) == before, f"{name}: enqueued {h.sent[before:][:3]}"
    assert len(h.stored) == stored, f"{name}: stored {h.stored[stored:][:3]}"
    assert SECRET not in r.text
    # an answer that says what is wrong, bounded in size (never an echo of a huge body)
    assert len(r.content) < 4096
    assert elapsed < 10, f"{name} took {elapsed:.1f}s"
    assert h.client.get("/healthz").status_code == 200


@pytest.mark.parametrize("name", sorted(IGNORED))
def test_events_of_types_stsync_does_not_route_are_acknowledged_and_ignored(
    h: Harness, name: str
) -> None:
    before = len(h.sent)
    r = h.post(IGNORED[name])
    assert r.status_code == 202, (name, r.status_code, r.text[:300])
    assert r.json()["enqueued"] == 0
    assert len(h.sent) == before


def test_body_over_the_cap_is_413_without_reading_it_all(h: Harness) -> None:
    huge = b'{"messageId":"m","data":[' + b" " * (2 * 1024 * 1024) + b"]}"
    r = h.post(huge)
    assert r.status_code == 413
    # a lying content-length is no way around the cap: the stream is counted
    chunks = (b"x" * 65536 for _ in range(40))
    r = h.client.post(
        f"/webhooks/servicetrade/{SECRET}",
        content=chunks,
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 413
    assert h.client.get("/healthz").status_code == 200


def test_wrong_content_type_or_form_encoding_is_still_parsed_as_json_or_refused(
    h: Harness,
) -> None:
    before = len(h.sent)
    r = h.post(b"messageId=m&data=x", content_type="application/x-www-form-urlencoded")
    assert 400 <= r.status_code < 500 and len(h.sent) == before


def test_after_the_whole_corpus_a_good_delivery_still_goes_through(h: Harness) -> None:
    for body in REFUSED.values():
        h.post(body)
    r = h.post(
        raw(
            delivery(
                event("company", 42),
                event("invoice", INT64_MAX, "updated"),
                message_id="good-after-corpus",
            )
        )
    )
    assert r.status_code == 202 and r.json()["enqueued"] == 2
    assert h.sent[-2:] == [("sync.customer", (42, "main")), ("sync.invoice", (INT64_MAX, "main"))]
    assert h.client.get("/healthz").status_code == 200
