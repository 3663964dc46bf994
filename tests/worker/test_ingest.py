"""Webhook ingest: secret, size cap, validation, de-duplication, routing, broker down (F12)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis
from fastapi.testclient import TestClient

from ingest.app import create_ingest_app
from sandbox import credentials
from tests.conftest import DEMO_CONFIG, demo_env
from worker.settings import Settings, load_settings

SECRET = credentials.WEBHOOK_SECRET


@pytest.fixture
def ingest_settings(tmp_path: Path) -> Settings:
    env = demo_env(tmp_path, infolink_url="sqlite://", database_url="sqlite://")
    return load_settings(DEMO_CONFIG, env)


class Harness:
    def __init__(self, settings: Settings, r: Any) -> None:
        self.sent: list[tuple[str, tuple[Any, ...]]] = []
        self.stored: list[tuple[str, str, str]] = []
        self.fail_send = False
        self.app = create_ingest_app(
            settings,
            redis_client=r,
            send=self._send,
            ledger_ping=lambda: None,
            record_wakeups=self.stored.extend,
        )
        self.client = TestClient(self.app)

    def _send(self, name: str, args: tuple[Any, ...]) -> None:
        if self.fail_send:
            raise ConnectionError("broker down")
        self.sent.append((name, args))

    def post(self, body: Any, secret: str = SECRET) -> Any:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.client.post(
            f"/webhooks/servicetrade/{secret}",
            content=data,
            headers={"content-type": "application/json"},
        )


@pytest.fixture
def h(ingest_settings: Settings) -> Harness:
    return Harness(ingest_settings, fakeredis.FakeRedis())


def delivery(*events: tuple[str, int, str], message_id: str = "m-1") -> dict[str, Any]:
    return {
        "messageId": message_id,
        "timestamp": "1401833057",
        "data": [
            {
                "action": action,
                "timestamp": 1401833052,
                "userId": None,
                "entity": {"type": etype, "id": eid, "uri": f"https://x/api/{etype}/{eid}"},
            }
            for etype, eid, action in events
        ],
    }


def test_batched_delivery_enqueues_one_task_per_entity(h: Harness) -> None:
    r = h.post(
        delivery(("company", 5, "created"), ("location", 9, "created"), ("invoice", 44, "updated"))
    )
    assert r.status_code == 202
    assert r.json() == {"enqueued": 3, "duplicates": 0, "ignored": 0}
    assert h.sent == [
        ("sync.customer", (5, "main")),
        ("sync.site", (9, "main")),
        ("sync.invoice", (44, "main")),
    ]


def test_same_delivery_three_times_enqueues_once(h: Harness) -> None:
    body = delivery(("company", 5, "created"))
    codes = [h.post(body).status_code for _ in range(3)]
    assert codes == [202, 202, 202]
    assert h.sent == [("sync.customer", (5, "main"))]


def test_new_message_about_same_entity_is_enqueued_again(h: Harness) -> None:
    h.post(delivery(("job", 7, "updated"), message_id="a"))
    h.post(delivery(("job", 7, "updated"), message_id="b"))
    assert len(h.sent) == 2  # a real second change; the task itself is idempotent


def test_wrong_secret_is_a_plain_404_enqueueing_nothing(h: Harness) -> None:
    r = h.post(delivery(("company", 5, "created")), secret="x" * 36)
    assert r.status_code == 404
    assert r.text == "not found"
    assert SECRET not in r.text
    assert h.sent == []


def test_previous_secret_still_accepted_during_rotation(tmp_path: Path) -> None:
    env = demo_env(
        tmp_path,
        infolink_url="sqlite://",
        database_url="sqlite://",
        extra={"WEBHOOK_SECRET": "n" * 40, "WEBHOOK_PREVIOUS_SECRET": SECRET},
    )
    hh = Harness(load_settings(DEMO_CONFIG, env), fakeredis.FakeRedis())
    assert hh.post(delivery(("company", 1, "created"))).status_code == 202
    assert hh.post(delivery(("company", 2, "created")), secret="n" * 40).status_code == 202


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "malformed"),
        (b'{"messageId": "m", "data": "nope"}', "data"),
        (b'{"data": []}', "messageId"),
        (
            b'{"messageId": "m", "data": [{"action": "exploded", "entity": {"type": "job", "id": 1}}]}',
            "action",
        ),
        (
            b'{"messageId": "m", "data": [{"action": "created", "entity": {"type": "job", "id": -4}}]}',
            "id",
        ),
        (
            b'{"messageId": "m", "data": [{"action": "created", "entity": {"type": "job", "id": 99999999999999999999999}}]}',
            "id",
        ),
        (b'{"messageId": "m", "data": [{"action": "created", "entity": {"type": "job"}}]}', "id"),
        (b"[" * 5000 + b"]" * 5000, "malformed"),
    ],
)
def test_malformed_bodies_are_400_and_enqueue_nothing(
    h: Harness, body: bytes, fragment: str
) -> None:
    r = h.post(body)
    assert r.status_code == 400
    assert fragment in r.json()["error"]
    assert h.sent == []


def test_body_over_the_cap_is_413(h: Harness) -> None:
    big = json.dumps(delivery(("company", 1, "created"))).encode() + b" " * (1_048_576 + 10)
    r = h.post(big)
    assert r.status_code == 413
    assert h.sent == []


def test_unknown_entity_types_and_deletions_are_acknowledged_and_ignored(h: Harness) -> None:
    r = h.post(
        delivery(("appointment", 3, "updated"), ("job", 4, "deleted"), ("company", 8, "updated"))
    )
    assert r.status_code == 202
    assert r.json() == {"enqueued": 1, "duplicates": 0, "ignored": 2}
    assert h.sent == [("sync.customer", (8, "main"))]


def test_broker_down_is_503_and_the_event_is_not_marked_seen(h: Harness) -> None:
    h.fail_send = True
    body = delivery(("company", 5, "created"))
    assert h.post(body).status_code == 503
    h.fail_send = False
    assert h.post(body).status_code == 202  # ServiceTrade's retry gets through
    assert h.sent == [("sync.customer", (5, "main"))]


def test_ledger_down_is_503_enqueueing_nothing_and_the_retry_gets_through(
    ingest_settings: Settings,
) -> None:
    """Durable acknowledgement: no inbox row, no 2xx and no task (the task would be the only
    trace of the event once Redis loses it); ServiceTrade's retry is stored and enqueued."""
    down = [True]
    stored: list[tuple[str, str, str]] = []

    def record(entries: list[tuple[str, str, str]]) -> None:
        if down[0]:
            raise OSError("ledger down")
        stored.extend(entries)

    h = Harness(ingest_settings, fakeredis.FakeRedis())
    h.app = create_ingest_app(
        ingest_settings,
        redis_client=fakeredis.FakeRedis(),
        send=h._send,
        ledger_ping=lambda: None,
        record_wakeups=record,
    )
    h.client = TestClient(h.app)
    body = delivery(("company", 5, "created"))
    r = h.post(body)
    assert r.status_code == 503 and r.json() == {"error": "ledger unavailable; retry later"}
    assert h.sent == [] and stored == []
    down[0] = False
    assert h.post(body).status_code == 202
    assert stored == [("main", "sync.customer", "5")]
    assert h.sent == [("sync.customer", (5, "main"))]


def test_an_unexpected_exception_is_a_500_from_the_server_storing_nothing(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in the webhook's own code (not the ledger or the broker, which answer 503) reaches
    uvicorn, which answers 500 as Starlette's error middleware would: not a 2xx, so ServiceTrade
    retries, and nothing was stored or queued. Under the real server, not the test client."""
    import httpx

    import ingest.app as ingest_app
    from worker.serve import ThreadServer, free_port

    def broken(body: bytes) -> str | None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(ingest_app, "_duplicate_key", broken)
    server = ThreadServer(h.app, free_port())
    try:
        url = f"http://127.0.0.1:{server.port}/webhooks/servicetrade/{SECRET}"
        body = json.dumps(delivery(("company", 5, "created"))).encode()
        r = httpx.post(url, content=body, headers={"content-type": "application/json"})
        assert r.status_code == 500
        assert h.sent == [] and h.stored == []
        monkeypatch.undo()  # the bug fixed and deployed: ServiceTrade's retry lands
        assert httpx.post(url, content=body).status_code == 202
        assert h.sent == [("sync.customer", (5, "main"))]
        assert h.stored == [("main", "sync.customer", "5")]
    finally:
        server.stop()


def test_other_methods_on_the_webhook_path_are_not_the_webhook(h: Harness) -> None:
    assert h.client.get(f"/webhooks/servicetrade/{SECRET}").status_code in (404, 405)
    assert h.client.post(f"/webhooks/servicetrade/{SECRET}/x", content=b"{}").status_code == 404
    assert h.sent == [] and h.stored == []


def test_redis_down_is_503(ingest_settings: Settings) -> None:
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    hh = Harness(ingest_settings, dead)
    assert hh.post(delivery(("company", 5, "created"))).status_code == 503
    assert hh.sent == []
    health = hh.client.get("/healthz")
    assert health.status_code == 503 and health.json()["broker"].startswith("down")


def test_healthz_ok(h: Harness) -> None:
    r = h.client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"broker": "ok", "ledger": "ok"}


def test_send_job_endpoint_needs_the_token(tmp_path: Path) -> None:
    env = demo_env(
        tmp_path,
        infolink_url="sqlite://",
        database_url="sqlite://",
        extra={"STSYNC_SEND_JOB_TOKEN": "t" * 32},
    )
    hh = Harness(load_settings(DEMO_CONFIG, env), fakeredis.FakeRedis())
    assert hh.client.post("/jobs/12/send?connection=main").status_code == 401
    assert (
        hh.client.post(
            "/jobs/12/send?connection=main", headers={"x-stsync-token": "wrong"}
        ).status_code
        == 401
    )
    r = hh.client.post("/jobs/12/send?connection=nope", headers={"x-stsync-token": "t" * 32})
    assert r.status_code == 400 and "unknown connection" in r.json()["error"]
    r = hh.client.post("/jobs/12/send?connection=main", headers={"x-stsync-token": "t" * 32})
    assert r.status_code == 202
    assert hh.sent == [("sync.job.send", (12, "main"))]


def test_the_ingest_stores_wake_ups_synced_to_disk_on_sqlite(tmp_path: Path) -> None:
    """Answered 2xx means stored even through a power loss: the ingest's inbox connection syncs
    SQLite's WAL at every commit (``synchronous=FULL``); the workers' ledger keeps ``NORMAL``."""
    from sqlalchemy import text

    from ingest.app import LedgerWakeups
    from worker.ledger import Ledger

    url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    worker_ledger = Ledger(url)
    worker_ledger.migrate()
    env = demo_env(tmp_path, infolink_url="sqlite://", database_url=url)
    wakeups = LedgerWakeups(load_settings(DEMO_CONFIG, env))
    try:
        wakeups([("main", "sync.customer", "5")])
        assert [(e.connection, e.task, e.source_id) for e in worker_ledger.inbox_entries()] == [
            ("main", "sync.customer", "5")
        ]
        with wakeups._ledger.engine.connect() as c:
            assert c.execute(text("PRAGMA synchronous")).scalar_one() == 2  # FULL
        with worker_ledger.engine.connect() as c:
            assert c.execute(text("PRAGMA synchronous")).scalar_one() == 1  # NORMAL
    finally:
        wakeups.close()
        worker_ledger.dispose()
