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
from celery.signals import before_task_publish
from celery.utils.saferepr import saferepr
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.publish import BatchPublisher, plain_argsrepr
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


#: argument shapes ``saferepr`` renders differently from ``repr`` (quotes, backslashes,
#: control characters, truncation of long values) next to plain ones
ARG = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="ascii"), max_size=40),
    st.text(min_size=500, max_size=1100, alphabet="ab '"),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False),
    st.binary(max_size=8),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(ARG, max_size=4).map(tuple))
def test_plain_argsrepr_is_what_saferepr_renders_or_nothing(args: tuple[Any, ...]) -> None:
    fast = plain_argsrepr(args, 1024)
    assert fast is None or fast == saferepr(args, 1024)


@pytest.mark.parametrize(
    ("args", "plain"),
    [
        ((41, "main"), True),
        ((2**63 - 1, "north-east.2"), True),
        (("main",), True),
        ((), True),
        (("it's", "main"), False),  # saferepr: 'it\'s', repr: "it's"
        (("back\\slash",), False),
        (("café",), False),
        (("tab\there",), False),
        (("x" * 600,), False),  # saferepr truncates at 1024 in all, the repr is kept short
        ((True, "main"), False),
        ([41, "main"], False),
    ],
)
def test_plain_argsrepr_takes_only_what_it_can_show_equal(args: Any, plain: bool) -> None:
    fast = plain_argsrepr(args, 1024)
    assert (fast is not None) is plain
    if fast is not None:
        assert fast == saferepr(args, 1024)


def _ids() -> tuple[str, str]:
    return str(uuid.uuid4()), str(uuid.uuid4())


@pytest.mark.parametrize("name", ["sync.invoice", "sync.customer", "schedule.timecard_catch_up"])
@pytest.mark.parametrize(
    "args", [(41, "main"), (0, "m"), (-7, "a b:c/d@e.f"), ("main",), (), (2**63, "x" * 200)]
)
def test_the_template_renders_what_celerys_builder_makes_byte_for_byte(
    prefixed: tuple[Any, redis.Redis, str], name: str, args: tuple[Any, ...]
) -> None:
    app, r, prefix = prefixed
    publisher = BatchPublisher(app, r, prefix)
    plan = publisher.plan(name)
    template = publisher._template(name, plan)
    assert template is not None
    argsrepr = plain_argsrepr(args, app.amqp.argsrepr_maxsize)
    assert argsrepr is not None
    task_id, tag = _ids()
    assert template.render(task_id, argsrepr, args, tag) == publisher.exact_message(
        name, args, task_id, tag
    )


@pytest.mark.parametrize(
    "args", [("it's", "main"), ("café", "main"), (41, "x" * 2000), (1.5, "main"), (None,)]
)
def test_arguments_the_template_does_not_cover_are_rendered_by_celery(
    prefixed: tuple[Any, redis.Redis, str], args: tuple[Any, ...]
) -> None:
    app, r, prefix = prefixed
    BatchPublisher(app, r, prefix).send_many([("sync.customer", args)])
    app.send_task("sync.customer", args=args)
    batched, reference = (_decoded(m) for m in r.lrange(f"{prefix}stsync.sync", 0, 1))
    assert batched["headers"]["argsrepr"] == reference["headers"]["argsrepr"]
    assert batched["headers"]["argsrepr"] == saferepr(args, app.amqp.argsrepr_maxsize)
    assert batched["body"] == reference["body"]


def test_before_task_publish_receivers_see_and_change_every_message(
    prefixed: tuple[Any, redis.Redis, str],
) -> None:
    app, r, prefix = prefixed
    publisher = BatchPublisher(app, r, prefix)
    publisher.send_many([("sync.customer", (1, "main"))])  # a template exists from now on
    seen: list[tuple[Any, Any]] = []

    def stamp(sender: Any = None, body: Any = None, headers: Any = None, **_: Any) -> None:
        seen.append((sender, body[0]))
        headers["traced"] = "yes"

    before_task_publish.connect(stamp, weak=False)
    try:
        publisher.send_many([("sync.customer", (2, "main")), ("sync.job", (3, "main"))])
    finally:
        before_task_publish.disconnect(stamp)
    assert seen == [("sync.customer", (2, "main")), ("sync.job", (3, "main"))]
    newest = [_decoded(m) for m in r.lrange(f"{prefix}stsync.sync", 0, 1)]
    assert [m["headers"].get("traced") for m in newest] == ["yes", "yes"]
    assert "traced" not in _decoded(r.lindex(f"{prefix}stsync.sync", 2) or b"")["headers"]


def test_a_template_that_cannot_reproduce_the_builder_is_not_used(
    prefixed: tuple[Any, redis.Redis, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, r, prefix = prefixed
    publisher = BatchPublisher(app, r, prefix)
    real = app.amqp.create_task_message

    def drifted(*args: Any, **kwargs: Any) -> Any:
        """A builder whose output a template cut from stand-ins would not match."""
        headers, properties, body, sent = real(*args, **kwargs)
        headers["argslen"] = len(body[0])
        return headers, properties, body, sent

    monkeypatch.setattr(app.amqp, "create_task_message", drifted)
    assert publisher._template("sync.customer", publisher.plan("sync.customer")) is None
    publisher.send_many([("sync.customer", (7, "main"))])
    stored = _decoded(r.lindex(f"{prefix}stsync.sync", 0) or b"")
    assert stored["headers"]["argslen"] == 2 and stored["body"][0] == [7, "main"]
