"""The result backend's store (``ResultsOnDemand._store_result``, worker/celery_app.py) on the real
Redis (``STSYNC_TEST_REDIS``) under a private key prefix.

What it keeps from Celery's own store: the result is stored with its expiry and published on the
task's channel, and a stored SUCCESS is never overwritten (a redelivered duplicate's later outcome
cannot replace it). What it changes: one round trip per stored result instead of two.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery import Celery, states

from worker.celery_app import RESULT_EXPIRES_S, ResultsOnDemand

REDIS_URL = os.environ.get("STSYNC_TEST_REDIS", "redis://127.0.0.1:6379/7")


class CountingConnection(redis.Connection):
    """Counts round trips: one send per command, one per pipeline (its commands go packed)."""

    sends = 0

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        type(self).sends += 1
        super().send_packed_command(command, check_health)


@pytest.fixture
def backend() -> Iterator[ResultsOnDemand]:
    prefix = f"test-results-{uuid.uuid4().hex[:8]}:"
    app = Celery("result-store-test")
    app.conf.update(
        result_backend=f"worker.celery_app:ResultsOnDemand+{REDIS_URL}",
        result_backend_transport_options={"global_keyprefix": prefix},
        result_serializer="json",
        accept_content=["json"],
        result_expires=RESULT_EXPIRES_S,
    )
    be = app.backend
    assert isinstance(be, ResultsOnDemand)
    be.__dict__["client"] = redis.Redis(
        connection_pool=redis.ConnectionPool.from_url(
            REDIS_URL, connection_class=CountingConnection
        )
    )
    yield be
    raw = redis.Redis.from_url(REDIS_URL)
    for key in raw.scan_iter(match=f"{prefix}*"):
        raw.delete(key)


def _raw() -> redis.Redis:
    return redis.Redis.from_url(REDIS_URL)


def test_a_result_is_stored_with_its_expiry_and_published_in_one_round_trip(
    backend: ResultsOnDemand,
) -> None:
    task_id = uuid.uuid4().hex
    key = backend.get_key_for_task(task_id)
    listener = _raw().pubsub()
    listener.subscribe(key)
    assert listener.get_message(timeout=5)["type"] == "subscribe"
    backend.store_result(task_id, "synced", states.SUCCESS)  # registers the script
    CountingConnection.sends = 0
    other = uuid.uuid4().hex
    backend.store_result(other, "unchanged", states.SUCCESS)
    assert CountingConnection.sends == 1  # Celery's own store: a GET, then SETEX + PUBLISH

    meta = backend.get_task_meta(task_id)
    assert (meta["status"], meta["result"]) == (states.SUCCESS, "synced")
    assert 0 < _raw().ttl(key) <= RESULT_EXPIRES_S
    published = listener.get_message(timeout=5)
    assert published is not None and published["type"] == "message"
    assert backend.decode_result(published["data"])["result"] == "synced"
    listener.close()


def test_a_stored_success_is_never_overwritten(backend: ResultsOnDemand) -> None:
    task_id = uuid.uuid4().hex
    backend.store_result(task_id, "synced", states.SUCCESS)
    backend.store_result(task_id, None, states.STARTED)
    backend.mark_as_failure(task_id, RuntimeError("a redelivered duplicate failed"))
    meta = backend.get_task_meta(task_id)
    assert (meta["status"], meta["result"]) == (states.SUCCESS, "synced")


def test_a_failure_or_retry_is_replaced_by_the_later_success(backend: ResultsOnDemand) -> None:
    task_id = uuid.uuid4().hex
    backend.mark_as_retry(task_id, RuntimeError("Spectrum busy"))
    assert backend.get_task_meta(task_id)["status"] == states.RETRY
    backend.mark_as_failure(task_id, RuntimeError("gave up"))
    assert backend.get_task_meta(task_id)["status"] == states.FAILURE
    backend.store_result(task_id, "synced", states.SUCCESS)
    meta = backend.get_task_meta(task_id)
    assert (meta["status"], meta["result"]) == (states.SUCCESS, "synced")


def test_a_value_that_is_not_json_is_overwritten_not_trusted(backend: ResultsOnDemand) -> None:
    task_id = uuid.uuid4().hex
    _raw().set(backend.get_key_for_task(task_id), b"\x80 not json")
    backend.store_result(task_id, "synced", states.SUCCESS)
    assert backend.get_task_meta(task_id)["result"] == "synced"
