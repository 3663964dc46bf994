"""The ingest's batched publish (ingest/publish.py) writes what ``send_task`` writes, in one pipeline.

Real Redis (``STSYNC_TEST_REDIS``) under a private key prefix, the real Celery app: the message a
worker would pop must be the one ``send_task`` makes, apart from the ids it generates.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from ingest.publish import BatchPublisher
from tests.conftest import DEMO_CONFIG, demo_env
from worker.settings import load_settings

REDIS_URL = os.environ.get("STSYNC_TEST_REDIS", "redis://127.0.0.1:6379/7")
#: generated per message (ids, the publishing process) or per thread (reply_to)
VARYING_HEADERS = {"id", "root_id", "origin"}


@pytest.fixture
def prefixed(tmp_path: Path) -> Iterator[tuple[Any, redis.Redis, str]]:
    from worker.celery_app import configure

    prefix = f"t{uuid.uuid4().hex[:10]}:"
    env = demo_env(tmp_path, infolink_url="sqlite://", database_url="sqlite://")
    env.update({"BROKER_URL": REDIS_URL, "STSYNC_REDIS_PREFIX": prefix})
    settings = load_settings(DEMO_CONFIG, env)
    app = configure(settings)
    r = redis.Redis.from_url(REDIS_URL)
    try:
        yield app, r, prefix
    finally:
        keys = list(r.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            r.delete(*keys)
        r.close()


def _decoded(raw: bytes | str) -> dict[str, Any]:
    msg: dict[str, Any] = json.loads(raw)
    msg["body"] = json.loads(base64.b64decode(msg["body"]))
    return msg


def test_batched_message_is_the_one_send_task_writes(
    prefixed: tuple[Any, redis.Redis, str],
) -> None:
    app, r, prefix = prefixed
    app.send_task("sync.invoice", args=(41, "main"))
    BatchPublisher(app, r, prefix).send_many([("sync.invoice", (41, "main"))])
    key = f"{prefix}stsync.sync"
    assert r.llen(key) == 2
    batched, reference = (_decoded(m) for m in r.lrange(key, 0, 1))  # LPUSH: newest first
    assert (
        batched["body"]
        == reference["body"]
        == [[41, "main"], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
    )
    assert {k: v for k, v in batched["headers"].items() if k not in VARYING_HEADERS} == {
        k: v for k, v in reference["headers"].items() if k not in VARYING_HEADERS
    }
    assert batched["headers"]["root_id"] == batched["headers"]["id"]
    for k in ("content-type", "content-encoding"):
        assert batched[k] == reference[k]
    props = {
        k: v
        for k, v in batched["properties"].items()
        if k not in ("correlation_id", "delivery_tag")
    }
    ref_props = {
        k: v
        for k, v in reference["properties"].items()
        if k not in ("correlation_id", "delivery_tag")
    }
    assert props == ref_props
    assert batched["properties"]["correlation_id"] == batched["headers"]["id"]


def test_many_tasks_go_out_in_one_round_trip_to_their_queues(
    prefixed: tuple[Any, redis.Redis, str],
) -> None:
    app, r, prefix = prefixed
    publisher = BatchPublisher(app, r, prefix)
    tasks = [("sync.customer", (i, "main")) for i in range(1, 301)]
    before = r.info("stats")["total_commands_processed"]
    publisher.send_many(tasks)
    commands = r.info("stats")["total_commands_processed"] - before
    # 300 LPUSHes in one pipeline, plus this test's own INFO call; other clients of this Redis
    # may add a few, never one per task again
    assert 300 <= commands < 300 + 50
    ids = [_decoded(m)["body"][0][0] for m in r.lrange(f"{prefix}stsync.sync", 0, -1)]
    assert sorted(ids) == list(range(1, 301))


def test_registered_tasks_keep_their_own_queue(prefixed: tuple[Any, redis.Redis, str]) -> None:
    app, r, prefix = prefixed
    app.loader.import_default_modules()
    assert "schedule.timecard_catch_up" in app.tasks  # registered (and the app finalized)
    publisher = BatchPublisher(app, r, prefix)
    assert publisher.queue_of("sync.invoice") == "stsync.sync"
    assert publisher.queue_of("schedule.timecard_catch_up") == "stsync.schedule"
    app.send_task("schedule.timecard_catch_up", args=("main",))
    publisher.send_many([("schedule.timecard_catch_up", ("main",))])
    batched, reference = (_decoded(m) for m in r.lrange(f"{prefix}stsync.schedule", 0, 1))
    assert batched["body"] == reference["body"]
    assert {k: v for k, v in batched["headers"].items() if k not in VARYING_HEADERS} == {
        k: v for k, v in reference["headers"].items() if k not in VARYING_HEADERS
    }
