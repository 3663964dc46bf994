"""The ingest's one-round-trip accept step (``BatchPublisher.enqueue_once``, ingest/publish.py)
on the real Redis (``STSYNC_TEST_REDIS``) under a private key prefix, with the real Celery app.

What it must keep from the two-pipeline step it replaces: the read-cache stamps are written
before any task exists; an event is enqueued once however often it is delivered; and a failure
never leaves a dedupe key set for an event whose tasks are not all in Redis (ServiceTrade's
retry must enqueue it).
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from fastapi.testclient import TestClient

from ingest.app import create_ingest_app
from ingest.publish import BatchPublisher
from sandbox.credentials import WEBHOOK_SECRET
from tests.conftest import DEMO_CONFIG, demo_env
from worker.settings import Settings, load_settings

REDIS_URL = os.environ.get("STSYNC_TEST_REDIS", "redis://127.0.0.1:6379/7")


class CountingRedis(redis.Redis):
    """A client that counts the commands it sends (a script call is one)."""

    commands = 0

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self.commands += 1
        return super().execute_command(*args, **options)


@dataclass
class Broker:
    settings: Settings
    app: Celery
    r: CountingRedis
    prefix: str

    def queue(self, name: str = "stsync.sync") -> list[dict[str, Any]]:
        """The messages in a queue, oldest first, bodies decoded."""
        out = []
        for raw in reversed(self.r.lrange(f"{self.prefix}{name}", 0, -1)):
            msg = json.loads(raw)
            msg["body"] = json.loads(base64.b64decode(msg["body"]))
            out.append(msg)
        return out


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    from worker.celery_app import configure

    prefix = f"t{uuid.uuid4().hex[:10]}:"
    env = demo_env(tmp_path, infolink_url="sqlite://", database_url="sqlite://")
    env.update({"BROKER_URL": REDIS_URL, "STSYNC_REDIS_PREFIX": prefix})
    settings = load_settings(DEMO_CONFIG, env)
    app = configure(settings)
    r = CountingRedis(connection_pool=redis.ConnectionPool.from_url(REDIS_URL))
    try:
        yield Broker(settings, app, r, prefix)
    finally:
        keys = list(r.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            r.delete(*keys)
        r.close()


def test_stamps_dedupe_keys_and_messages_go_in_one_round_trip(broker: Broker) -> None:
    publisher = BatchPublisher(broker.app, broker.r, broker.prefix)
    p = broker.prefix
    events = [(f"{p}seen:m1:company:{i}", [("sync.customer", (i, "main"))]) for i in range(1, 101)]
    publisher.enqueue_once([(f"{p}stamp:job:1", "s1")], 60, events[:1], 30)  # script loaded
    broker.r.commands = 0
    done = publisher.enqueue_once(
        [(f"{p}stamp:job:4", "abc"), (f"{p}stamp:location:5", "def")], 180, events, 30
    )
    assert broker.r.commands == 1
    assert done == [False] + [True] * 99  # the first event was enqueued by the first call
    assert broker.r.get(f"{p}stamp:job:4") == b"abc" and broker.r.get(f"{p}stamp:location:5")
    assert 170 < broker.r.ttl(f"{p}stamp:job:4") <= 180
    assert 20 < broker.r.ttl(f"{p}seen:m1:company:50") <= 30
    assert [m["body"][0] for m in broker.queue()] == [[i, "main"] for i in range(1, 101)]


def test_an_event_delivered_again_is_enqueued_once(broker: Broker) -> None:
    publisher = BatchPublisher(broker.app, broker.r, broker.prefix)
    key = f"{broker.prefix}seen:m1:job:7:updated"
    tasks = [("sync.job", (7, "main")), ("sync.job", (7, "second"))]
    # twice in one group, then again in the next
    assert publisher.enqueue_once([], 60, [(key, tasks), (key, tasks)], 30) == [True, False]
    assert publisher.enqueue_once([], 60, [(key, tasks)], 30) == [False]
    assert [m["body"][0] for m in broker.queue()] == [[7, "main"], [7, "second"]]


def test_a_failed_push_releases_its_dedupe_key_and_the_retry_enqueues_it(broker: Broker) -> None:
    broker.app.loader.import_default_modules()
    assert "schedule.timecard_catch_up" in broker.app.tasks  # registered: their own queues
    publisher = BatchPublisher(broker.app, broker.r, broker.prefix)
    p = broker.prefix
    assert publisher.queue_of("schedule.timecard_catch_up") == "stsync.schedule"
    broker.r.set(f"{p}stsync.schedule", "not a list")  # LPUSH there fails (WRONGTYPE)
    events: list[tuple[str, list[tuple[str, tuple[Any, ...]]]]] = [
        (f"{p}seen:a", [("sync.customer", (1, "main"))]),
        (f"{p}seen:b", [("sync.customer", (2, "main")), ("schedule.timecard_catch_up", ("x",))]),
        (f"{p}seen:c", [("sync.customer", (3, "main"))]),
    ]
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        publisher.enqueue_once([(f"{p}stamp:job:9", "s")], 60, events, 30)
    assert broker.r.get(f"{p}stamp:job:9") == b"s"  # written before any task
    assert broker.r.exists(f"{p}seen:a") and not broker.r.exists(f"{p}seen:b")
    assert not broker.r.exists(f"{p}seen:c")
    broker.r.delete(f"{p}stsync.schedule")
    # ServiceTrade's retry of the same deliveries
    assert publisher.enqueue_once([], 60, events, 30) == [False, True, True]
    ids = [m["body"][0][0] for m in broker.queue()]
    assert ids.count(1) == 1 and ids.count(3) == 1 and ids.count(2) >= 1
    assert [m["body"][0] for m in broker.queue("stsync.schedule")] == [["x"]]


def test_an_unreachable_broker_raises_and_sets_nothing(broker: Broker) -> None:
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    publisher = BatchPublisher(broker.app, dead, broker.prefix)
    with pytest.raises(redis.ConnectionError):
        publisher.enqueue_once([], 60, [(f"{broker.prefix}seen:a", [("sync.job", (1, "m"))])], 30)


def _post(client: TestClient, message_id: str, *events: tuple[str, int]) -> Any:
    body = {
        "messageId": message_id,
        "timestamp": "1",
        "data": [
            {"action": "updated", "timestamp": 1, "entity": {"type": t, "id": i}} for t, i in events
        ],
    }
    return client.post(
        f"/webhooks/servicetrade/{WEBHOOK_SECRET}",
        content=json.dumps(body),
        headers={"content-type": "application/json"},
    )


def test_the_ingest_enqueues_through_one_round_trip_per_group(broker: Broker) -> None:
    stored: list[tuple[str, str, str]] = []
    app = create_ingest_app(
        broker.settings,
        redis_client=broker.r,
        ledger_ping=lambda: None,
        record_wakeups=stored.extend,
    )
    client = TestClient(app)
    first = _post(client, "m-1", ("job", 4), ("company", 8), ("appointment", 2))
    assert first.status_code == 202, first.text
    assert first.json() == {"enqueued": 2, "duplicates": 0, "ignored": 1}
    stamp = f"{broker.prefix}stsync:readcache:stamp:job:4"
    assert broker.r.get(stamp) is not None
    before = broker.r.get(stamp)
    broker.r.commands = 0
    again = _post(client, "m-1", ("job", 4), ("company", 8), ("appointment", 2))
    assert again.json() == {"enqueued": 0, "duplicates": 2, "ignored": 1}
    assert broker.r.commands == 1
    assert broker.r.get(stamp) != before  # every delivery stamps what it names, duplicates too
    assert [m["headers"]["task"] for m in broker.queue()] == ["sync.job", "sync.customer"]
    assert ("main", "sync.job", "4") in stored and ("main", "sync.customer", "8") in stored
