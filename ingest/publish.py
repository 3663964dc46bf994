"""Build a delivery's Celery messages in memory and push them in one Redis pipeline (P1).

``app.send_task`` costs ~0.2-0.4 ms of CPU per task on the project's machine (routing, kombu's
``maybe_declare``, retry wrappers, a ``task-sent`` event) plus a Redis round trip each, which is
what held the ingest at ~1,200 events/s. kombu 5.7's ``Producer.batch`` would pipeline the
commands but refuses connections that retry on timeout, which the broker connection does.

So the ingest builds each message with Celery's own builder (``app.amqp.create_task_message``:
protocol 2 headers, body and properties, exactly as ``send_task`` makes them), wraps it in the
envelope kombu's Redis transport stores (``kombu_envelope``: what ``Channel.prepare_message``
plus ``basic_publish`` produce for a direct queue: base64 body, delivery tag, delivery info) and
``LPUSH``es every message of the delivery in one pipeline to the queue key (under the broker's
global key prefix). ``tests/worker/test_ingest_publish.py`` checks the envelope against what
``send_task`` writes, so a kombu or Celery upgrade that changes the format fails there.

Not sent: the ``task-sent`` monitoring event (Flower shows such a task from ``task-received``
on). Sent, as ``send_task`` does: Celery's ``before_task_publish`` signal, before the message is
stored. Messages of one delivery may land twice when a pipeline fails half-way and ServiceTrade
retries the delivery: harmless, every sync is idempotent.
"""

from __future__ import annotations

import base64
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis
from celery import Celery
from celery.signals import before_task_publish
from kombu.serialization import dumps as kombu_dumps
from kombu.utils.json import dumps as json_dumps

Task = tuple[str, tuple[Any, ...]]


def kombu_envelope(
    body: Any, headers: dict[str, Any], properties: dict[str, Any], queue: str
) -> str:
    """The JSON kombu's Redis transport stores for a message published to ``queue`` (anonymous
    direct exchange, priority 0, persistent), the task ``body`` serialized as JSON."""
    content_type, content_encoding, data = kombu_dumps(body, serializer="json")
    raw = data.encode(content_encoding) if isinstance(data, str) else data
    return json_dumps(
        {
            "body": base64.b64encode(raw).decode("ascii"),
            "content-encoding": content_encoding,
            "content-type": content_type,
            "headers": headers,
            "properties": {
                **properties,
                "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": queue},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        }
    )


@dataclass(frozen=True)
class _Plan:
    """How ``send_task`` would publish a task name: its queue and the builder's options."""

    queue: str
    limits: dict[str, Any]
    ignore_result: Any
    #: False: the task has options this fast path does not reproduce; use ``send_task``
    fast: bool


class BatchPublisher:
    """Celery messages for many tasks, pushed to the broker's Redis in one pipeline."""

    def __init__(self, app: Celery, client: redis.Redis, key_prefix: str = "") -> None:
        self.app = app
        self.client = client
        self.key_prefix = key_prefix
        self._plans: dict[str, _Plan] = {}
        self._lock = threading.Lock()

    def plan(self, name: str) -> _Plan:
        """Routing and options as ``send_task`` works them out (the task's own execution
        options when it is registered here, then the router), once per task name."""
        with self._lock:
            plan = self._plans.get(name)
        if plan is not None:
            return plan
        # the registry send_task itself looks at (without finalizing the app)
        task = getattr(self.app, "_tasks", {}).get(name)
        options: dict[str, Any] = {}
        if task is not None and hasattr(task, "_get_exec_options"):
            options = {k: v for k, v in task._get_exec_options().items() if v is not None}
        limits = {k: options.pop(k, None) for k in ("time_limit", "soft_time_limit", "expires")}
        ignore_result = options.pop("ignore_result", None)
        routed = self.app.amqp.router.route(options, name, (), {}, task)
        target = routed.pop("queue", None)
        queue = str(getattr(target, "name", target) or self.app.conf.task_default_queue)
        exchange_type = getattr(getattr(target, "exchange", None), "type", "direct")
        extra = {k: v for k, v in routed.items() if v is not None}
        fast = (
            exchange_type == "direct"
            and extra.pop("serializer", "json") == "json"
            and not extra
            and limits["expires"] is None
        )
        plan = _Plan(queue, limits, ignore_result, fast)
        with self._lock:
            self._plans[name] = plan
        return plan

    def queue_of(self, name: str) -> str:
        return self.plan(name).queue

    def message(self, name: str, args: tuple[Any, ...]) -> tuple[str, str]:
        """(queue, stored message) of one task."""
        plan = self.plan(name)
        task_id = str(uuid.uuid4())
        # the arguments ``send_task`` gives Celery's builder for a plain task
        headers, properties, body, _sent_event = self.app.amqp.create_task_message(
            task_id,
            name,
            args,
            {},
            reply_to=self.app.thread_oid,
            time_limit=plan.limits["time_limit"],
            soft_time_limit=plan.limits["soft_time_limit"],
            ignore_result=plan.ignore_result,
        )
        if before_task_publish.receivers:
            # as Celery's own publish does: instrumentation (tracing, audits, the tests' spy)
            # sees every message and may add headers before it is stored
            before_task_publish.send(
                sender=name,
                body=body,
                exchange="",
                routing_key=plan.queue,
                declare=[],
                headers=headers,
                properties=properties,
                retry_policy=None,
            )
        return plan.queue, kombu_envelope(body, headers, properties, plan.queue)

    def send_many(self, tasks: Sequence[Task]) -> None:
        """Push every task (name, args) in one pipeline; raises when the broker fails. A task
        with options the envelope does not cover (priority, expiry ...) goes by ``send_task``."""
        if not tasks:
            return
        slow = [(name, args) for name, args in tasks if not self.plan(name).fast]
        pipe = self.client.pipeline(transaction=False)
        for name, args in tasks:
            if self.plan(name).fast:
                queue, payload = self.message(name, args)
                pipe.lpush(f"{self.key_prefix}{queue}", payload)
        pipe.execute()
        for name, args in slow:
            self.app.send_task(name, args=args)
