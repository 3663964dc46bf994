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

The builder, ``saferepr`` of the arguments and the two JSON encodings of the whole message cost
~45 us a message. The ingest's tasks take plain ``(record id, connection)`` arguments, so each
task name gets a template once (per thread and process: ``reply_to`` and ``origin`` are theirs):
the builder's own message with stand-ins cut out where the task id, ``argsrepr``, the delivery
tag and the body go, checked at build time against the builder on a probe task. A message is then
the template filled in (~19 us). Arguments whose ``saferepr`` could differ from ``repr``
(``plain_argsrepr``), a template that failed its check, and every message while a
``before_task_publish`` receiver is connected go through the builder, as before.

Not sent: the ``task-sent`` monitoring event (Flower shows such a task from ``task-received``
on). Sent, as ``send_task`` does: Celery's ``before_task_publish`` signal, before the message is
stored. Messages of one delivery may land twice when a pipeline fails half-way and ServiceTrade
retries the delivery: harmless, every sync is idempotent.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from celery import Celery
from celery.signals import before_task_publish
from celery.utils.nodenames import anon_nodename
from kombu.serialization import dumps as kombu_dumps
from kombu.utils.json import dumps as json_dumps

Task = tuple[str, tuple[Any, ...]]


def kombu_envelope(
    body: Any,
    headers: dict[str, Any],
    properties: dict[str, Any],
    queue: str,
    delivery_tag: str | None = None,
) -> str:
    """The JSON kombu's Redis transport stores for a message published to ``queue`` (anonymous
    direct exchange, priority 0, persistent), the task ``body`` serialized as JSON."""
    content_type, content_encoding, data = kombu_dumps(body, serializer="json")
    raw = data.encode(content_encoding) if isinstance(data, str) else data
    return _envelope_json(
        base64.b64encode(raw).decode("ascii"),
        content_type,
        content_encoding,
        headers,
        properties,
        queue,
        delivery_tag or str(uuid.uuid4()),
    )


def _envelope_json(
    body_b64: str,
    content_type: str,
    content_encoding: str,
    headers: dict[str, Any],
    properties: dict[str, Any],
    queue: str,
    delivery_tag: str,
) -> str:
    return json_dumps(
        {
            "body": body_b64,
            "content-encoding": content_encoding,
            "content-type": content_type,
            "headers": headers,
            "properties": {
                **properties,
                "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": queue},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": delivery_tag,
            },
        }
    )


_INT_BOUND = 2**64


def plain_argsrepr(args: Any, maxsize: int) -> str | None:
    """``repr(args)`` when it is provably what Celery's ``saferepr(args, maxsize)`` renders,
    else None: a tuple of ints (not bools) and of printable ASCII strings without quote or
    backslash (``saferepr`` escapes a quote its own way and nothing else), short enough that
    ``saferepr`` truncates nothing. The ingest's tasks take ``(record id, connection name)``."""
    if type(args) is not tuple:
        return None
    for arg in args:
        kind = type(arg)
        if kind is str:
            if not (arg.isascii() and arg.isprintable()) or "'" in arg or "\\" in arg:
                return None
        elif kind is not int or not -_INT_BOUND < arg < _INT_BOUND:
            return None
    text = repr(args)
    # saferepr truncates a value once what it rendered so far reaches ``maxsize``
    return text if len(text) < maxsize // 2 else None


#: One round trip for a group of deliveries (``BatchPublisher.enqueue_once``). KEYS: the
#: read-cache stamps, then per event its dedupe key followed by the queue key of each of its
#: messages. ARGV: the number of stamps, the stamps' and the dedupe keys' expiry, the stamps,
#: then per event the number of its messages followed by them. The stamps are written first
#: (before any task exists); an event's messages are pushed only when its dedupe key was not
#: set yet, and the key stays set only when every one of its messages was pushed: an error
#: releases the key and ends the script, events before it done, events after it untouched.
#: Returns 1 (enqueued) or 0 (duplicate) per event.
_ENQUEUE_ONCE = """
local stamps = tonumber(ARGV[1])
for i = 1, stamps do
  redis.call('SET', KEYS[i], ARGV[3 + i], 'EX', ARGV[2])
end
local out = {}
local k = stamps + 1
local a = stamps + 4
while k <= #KEYS do
  local dedupe = KEYS[k]
  local count = tonumber(ARGV[a])
  if redis.call('SET', dedupe, 1, 'NX', 'EX', ARGV[3]) then
    for m = 1, count do
      local pushed = redis.pcall('LPUSH', KEYS[k + m], ARGV[a + m])
      if type(pushed) == 'table' and pushed.err then
        redis.call('DEL', dedupe)
        return redis.error_reply(pushed.err)
      end
    end
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
  k = k + 1 + count
  a = a + 1 + count
end
return out
"""


@dataclass(frozen=True)
class _Plan:
    """How ``send_task`` would publish a task name: its queue and the builder's options."""

    queue: str
    limits: dict[str, Any]
    ignore_result: Any
    #: False: the task has options this fast path does not reproduce; use ``send_task``
    fast: bool


#: stand-ins rendered into a template where each message has its own value
_TASK_ID = "stsync-template-task-id"
_ARGSREPR = "stsync-template-argsrepr"
_DELIVERY_TAG = "stsync-template-delivery-tag"
_BODY = "stsync-template-body"
_ARGS = "stsync-template-args"
_SLOTS = (_TASK_ID, _ARGSREPR, _DELIVERY_TAG, _BODY)
_SLOT = re.compile("|".join(re.escape(json.dumps(s)) for s in _SLOTS))


@dataclass(frozen=True)
class _Template:
    """One task name's stored message with its per-message values left open: the JSON
    Celery's builder and kombu produce, cut where the task id, the ``argsrepr`` header, the
    delivery tag and the body go. Filling it costs two JSON string encodings and a base64
    instead of Celery's builder, ``saferepr`` and two JSON encodings of the whole message."""

    #: the JSON text between the open values
    parts: tuple[str, ...]
    #: which value goes after each part (an index into ``_SLOTS``)
    slots: tuple[int, ...]
    #: the body's JSON around its arguments' JSON
    body_head: str
    body_tail: str

    @classmethod
    def build(cls, publisher: BatchPublisher, name: str, plan: _Plan) -> _Template | None:
        """From Celery's builder run with stand-in values, then checked: it must render a
        probe task exactly as the builder does, else None (every message of ``name`` then
        goes through the builder)."""
        headers, properties, body = publisher.built(name, (), _TASK_ID, _ARGSREPR)
        if not (isinstance(body, tuple) and len(body) == 3 and body[1] == {}):
            return None  # not the protocol-2 body this template knows how to fill
        content_type, content_encoding, data = kombu_dumps(([_ARGS], *body[1:]), serializer="json")
        if content_encoding != "utf-8" or not isinstance(data, str):
            return None
        body_head, sep, body_tail = data.partition(json.dumps([_ARGS]))
        text = _envelope_json(
            _BODY, content_type, content_encoding, headers, properties, plan.queue, _DELIVERY_TAG
        )
        if not sep or any(s in text.replace(json.dumps(s), "") for s in _SLOTS):
            return None  # a stand-in landed somewhere other than as a whole JSON string
        parts = tuple(_SLOT.split(text))
        slots = tuple(_SLOTS.index(json.loads(m.group())) for m in _SLOT.finditer(text))
        template = cls(parts, slots, body_head, body_tail)
        probe = (1234567, "probe-connection")
        probe_id, probe_tag = str(uuid.uuid4()), str(uuid.uuid4())
        probe_repr = plain_argsrepr(probe, publisher.app.amqp.argsrepr_maxsize)
        if probe_repr is None:
            return None
        rendered = template.render(probe_id, probe_repr, probe, probe_tag)
        # the builder's message without ``before_task_publish``: the probe is never published
        headers, properties, body = publisher.built(name, probe, probe_id)
        if rendered != kombu_envelope(body, headers, properties, plan.queue, probe_tag):
            return None
        return template

    def render(self, task_id: str, argsrepr: str, args: tuple[Any, ...], delivery_tag: str) -> str:
        """The stored message of one task (``args`` plain, ``argsrepr`` theirs)."""
        body = f"{self.body_head}{json.dumps(args)}{self.body_tail}"
        values = (
            json.dumps(task_id),
            json.dumps(argsrepr),
            json.dumps(delivery_tag),
            f'"{base64.b64encode(body.encode()).decode("ascii")}"',
        )
        out = [self.parts[0]]
        for slot, part in zip(self.slots, self.parts[1:], strict=True):
            out.append(values[slot])
            out.append(part)
        return "".join(out)


class BatchPublisher:
    """Celery messages for many tasks, pushed to the broker's Redis in one pipeline."""

    def __init__(self, app: Celery, client: redis.Redis, key_prefix: str = "") -> None:
        self.app = app
        self.client = client
        self.key_prefix = key_prefix
        self._plans: dict[str, _Plan] = {}
        self._templates: dict[tuple[str, str, str], _Template | None] = {}
        self._lock = threading.Lock()
        self._enqueue_once = client.register_script(_ENQUEUE_ONCE)

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
        """(queue, stored message) of one task: from the task name's template when its
        arguments are plain (``plain_argsrepr``) and no ``before_task_publish`` receiver may
        change the message, else from Celery's builder."""
        plan = self.plan(name)
        if not before_task_publish.receivers:
            argsrepr = plain_argsrepr(args, self.app.amqp.argsrepr_maxsize)
            if argsrepr is not None:
                template = self._template(name, plan)
                if template is not None:
                    task_id = str(uuid.uuid4())
                    return plan.queue, template.render(task_id, argsrepr, args, str(uuid.uuid4()))
        return plan.queue, self.exact_message(name, args, str(uuid.uuid4()), str(uuid.uuid4()))

    def exact_message(
        self, name: str, args: tuple[Any, ...], task_id: str, delivery_tag: str
    ) -> str:
        """The stored message of one task as Celery's builder and kombu make it, after the
        ``before_task_publish`` receivers saw it (and maybe changed it)."""
        plan = self.plan(name)
        headers, properties, body = self.built(name, args, task_id)
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
        return kombu_envelope(body, headers, properties, plan.queue, delivery_tag)

    def built(
        self, name: str, args: tuple[Any, ...], task_id: str, argsrepr: str | None = None
    ) -> tuple[dict[str, Any], dict[str, Any], Any]:
        """(headers, properties, body) of one task from Celery's builder, with the arguments
        ``send_task`` gives it for a plain task."""
        plan = self.plan(name)
        headers, properties, body, _sent_event = self.app.amqp.create_task_message(
            task_id,
            name,
            args,
            {},
            reply_to=self.app.thread_oid,
            time_limit=plan.limits["time_limit"],
            soft_time_limit=plan.limits["soft_time_limit"],
            ignore_result=plan.ignore_result,
            argsrepr=argsrepr,
        )
        return headers, properties, body

    def _template(self, name: str, plan: _Plan) -> _Template | None:
        """The message template of ``name`` for this thread (``reply_to`` is the thread's
        id) and process (``origin``), built on first use; None when it could not be shown to
        render what Celery's builder makes."""
        key = (name, self.app.thread_oid, anon_nodename())
        try:
            return self._templates[key]
        except KeyError:
            pass
        template = _Template.build(self, name, plan)
        with self._lock:
            self._templates[key] = template
        return template

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

    def can_enqueue_once(self, names: Iterable[str]) -> bool:
        """Whether ``enqueue_once`` takes tasks of these names: every message stored as built
        here (no ``send_task``), and no ``before_task_publish`` receiver that would see the
        messages of events that turn out to be duplicates."""
        return not before_task_publish.receivers and all(self.plan(n).fast for n in names)

    def enqueue_once(
        self,
        stamps: Sequence[tuple[str, str]],
        stamp_ttl_s: int,
        events: Sequence[tuple[str, Sequence[Task]]],
        dedupe_ttl_s: int,
    ) -> list[bool]:
        """In ONE round trip (``_ENQUEUE_ONCE``): write the read-cache ``stamps`` (key, value),
        then for each event (its dedupe key, its tasks) set the key unless it exists and push
        the tasks; True per event enqueued now, False per duplicate. Raises when the broker
        fails; an event whose dedupe key the broker kept has all its tasks in their queues.
        Only for task names ``can_enqueue_once`` accepts. Messages are built for every event,
        duplicates included (they are rare: ServiceTrade's retries)."""
        keys = [key for key, _ in stamps]
        args: list[str | int] = [len(stamps), stamp_ttl_s, dedupe_ttl_s]
        args.extend(stamp for _, stamp in stamps)
        for dedupe, tasks in events:
            keys.append(dedupe)
            args.append(len(tasks))
            for name, task_args in tasks:
                queue, payload = self.message(name, task_args)
                keys.append(f"{self.key_prefix}{queue}")
                args.append(payload)
        if not keys:
            return []
        return [bool(x) for x in self._enqueue_once(keys=keys, args=args)]
