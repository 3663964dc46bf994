"""Webhook ingest (F12): verify the URL secret, parse, de-duplicate, enqueue ids, answer fast.

ServiceTrade signs nothing, so the secret is the last path segment, compared in constant time
against the current and the previous secret (rotation). ServiceTrade counts any 2xx-4xx as
delivered and retries only on 5xx/timeouts (reference §7), so:
- wrong secret -> 404 (plain, no echo of the path); body over the cap -> 413;
- malformed JSON or wrong shape -> 400 with what is wrong, nothing enqueued;
- unknown entity types and deletions -> acknowledged and ignored;
- broker unreachable -> 503, so ServiceTrade tries again (the dedupe key is released).

Durable acknowledgement (issue 17): before it answers 2xx, ingest writes one inbox row per
announced record and connection into the ledger (``record_wakeups``). Redis only carries the
wake-up; when Redis loses it, the Beat re-enqueuer (tasks/requeue.py) queues the inbox row once
it is due. A ledger that cannot take the write -> 503 (ServiceTrade tries again), never a 2xx for
an event that is not stored.
The secret is in the request line: uvicorn's access log is off for this app and errors never
include the path.

Throughput (docs/performance.md, P1): the webhook route is plain ASGI (``WebhookRoute``), served by
``IngestApp`` ahead of every FastAPI and Starlette layer; it parses and validates on the
event loop and hands the delivery to a group commit (ingest/group.py): the deliveries that
arrive while one flush runs are stored together by the next, in a worker thread, with ONE ledger
transaction for all their inbox rows, then ONE Redis round trip (a script) for their read-cache
stamps, dedupe keys and Celery messages (built in memory, ingest/publish.py). Each
delivery is answered only after the flush that took it returned. Blocking calls never hold the
event loop.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import ValidationError
from sqlalchemy import text
from starlette.types import Receive, Scope
from starlette.types import Send as AsgiSend

from clients.servicetrade.models import WebhookDelivery, WebhookEvent
from ingest.group import GroupCommit
from ingest.publish import BatchPublisher
from tasks.registry import ENTITY_TASKS, SYNC_ACTIONS, WORK_ORDER
from worker.readcache import fresh_stamps, mark_changed, stamp_ttl_s
from worker.settings import Settings

log = logging.getLogger("stsync.ingest")

Send = Callable[[str, tuple[Any, ...]], None]
#: enqueue many tasks at once: [(task name, args), ...] (one broker round trip in production)
SendMany = Callable[[Sequence[tuple[str, tuple[Any, ...]]]], None]
#: one round trip for a group: (stamps, their expiry, [(dedupe key, tasks)], dedupe expiry) ->
#: enqueued-now per event; None when it does not take these tasks (nothing was done then)
EnqueueOnce = Callable[
    [
        Sequence[tuple[str, str]],
        int,
        Sequence[tuple[str, Sequence[tuple[str, tuple[Any, ...]]]]],
        int,
    ],
    list[bool] | None,
]
#: durably record ``(connection, task, source id)`` wake-ups of one delivery (one transaction)
RecordWakeups = Callable[[list[tuple[str, str, str]]], None]

DEDUPE_PREFIX = "stsync:seen:"


def _secret_ok(given: str, settings: Settings) -> bool:
    ok = False
    for secret in (settings.webhook_secret, settings.webhook_previous_secret):
        if secret is not None:
            # evaluate both so timing does not tell which one matched
            ok |= hmac.compare_digest(given.encode(), secret.get_secret_value().encode())
    return ok


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{loc}: {err['msg']}")
    more = len(exc.errors()) - 5
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _duplicate_key(body: bytes) -> str | None:
    """The first key that appears twice in one JSON object of ``body``, else None.

    The parser keeps the last of duplicated keys; another parser might keep the first, so a
    body like ``{"id": 5, "id": 6}`` could mean different records to different readers. Called
    only on bodies the model already accepted (valid JSON, bounded size and depth).
    """
    try:
        json.loads(body, object_pairs_hook=_no_duplicates)
    except _DuplicateKey as exc:
        return str(exc)
    return None


@dataclass
class Accepted:
    """What ``accept_delivery`` did with a delivery's events (the 202 body)."""

    enqueued: int = 0
    duplicates: int = 0
    ignored: int = 0
    tasks: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {"enqueued": self.enqueued, "duplicates": self.duplicates, "ignored": self.ignored}


def accept_delivery(
    r: redis.Redis,
    message_id: str,
    events: Sequence[WebhookEvent],
    *,
    connections: Sequence[str],
    seen_prefix: str,
    dedupe_ttl_s: int,
    key_prefix: str,
    cache_ttl_s: float,
    send_many: SendMany,
    enqueue_once: EnqueueOnce | None = None,
) -> Accepted:
    """``accept_deliveries`` of one delivery."""
    return accept_deliveries(
        r,
        [(message_id, events)],
        connections=connections,
        seen_prefix=seen_prefix,
        dedupe_ttl_s=dedupe_ttl_s,
        key_prefix=key_prefix,
        cache_ttl_s=cache_ttl_s,
        send_many=send_many,
        enqueue_once=enqueue_once,
    )[0]


def _routed(
    deliveries: Sequence[tuple[str, Sequence[WebhookEvent]]], seen_prefix: str
) -> tuple[list[Accepted], list[tuple[int, str, str, int]]]:
    """One ``Accepted`` per delivery with its ignored events counted, and the routed events
    as (delivery index, dedupe key, task name, entity id)."""
    outs = [Accepted() for _ in deliveries]
    routed: list[tuple[int, str, str, int]] = []
    for n, (message_id, events) in enumerate(deliveries):
        for event in events:
            route = ENTITY_TASKS.get(event.entity.type)
            if route is None or event.action not in SYNC_ACTIONS:
                outs[n].ignored += 1
                continue
            e = event.entity
            dedupe = f"{seen_prefix}{message_id}:{e.type}:{e.id}:{event.action}"
            routed.append((n, dedupe, route[0], e.id))
    return outs, routed


def accept_deliveries(
    r: redis.Redis,
    deliveries: Sequence[tuple[str, Sequence[WebhookEvent]]],
    *,
    connections: Sequence[str],
    seen_prefix: str,
    dedupe_ttl_s: int,
    key_prefix: str,
    cache_ttl_s: float,
    send_many: SendMany,
    enqueue_once: EnqueueOnce | None = None,
) -> list[Accepted]:
    """The accept step of ``(message id, events)`` deliveries: de-duplicate, invalidate cached
    facts, enqueue. Blocking; one ``Accepted`` per delivery, in order.

    With ``enqueue_once`` (the broker's own publisher, when it takes these tasks) that is ONE
    round trip for all of them (``BatchPublisher.enqueue_once``): the read-cache stamps of every
    record they name first (before any task exists, so no worker reads a stale fact of them),
    then per routed event its dedupe ``SET NX`` and, when it was not set, its tasks; a dedupe key
    is only ever left set with all its tasks pushed. Otherwise (an injected ``send``, tasks
    that need ``send_task``, ``before_task_publish`` receivers) two:
    1. one Redis pipeline with the stamps and one ``SET NX`` per routed event;
    2. the tasks of the events seen for the first time, sent together (``send_many``); a
       failure releases the dedupe keys this call set.
    Either way a failure raises: the caller answers 503 and ServiceTrade's retry enqueues the
    events whose tasks are not in Redis.
    """
    outs, routed = _routed(deliveries, seen_prefix)
    changed = [(e.entity.type, e.entity.id) for _, events in deliveries for e in events]
    if enqueue_once is not None:
        done = enqueue_once(
            fresh_stamps(key_prefix, changed),
            stamp_ttl_s(cache_ttl_s),
            [
                (dedupe, [(task_name, (entity_id, conn)) for conn in connections])
                for _n, dedupe, task_name, entity_id in routed
            ],
            dedupe_ttl_s,
        )
        if done is not None:
            for (n, _dedupe, task_name, entity_id), enqueued in zip(routed, done, strict=True):
                if enqueued:
                    outs[n].tasks.extend((task_name, (entity_id, conn)) for conn in connections)
                    outs[n].enqueued += 1
                else:
                    outs[n].duplicates += 1
            return outs
    pipe = r.pipeline(transaction=False)
    stamps = mark_changed(pipe, key_prefix, changed, cache_ttl_s)
    for _n, dedupe, _task, _id in routed:
        pipe.set(dedupe, 1, nx=True, ex=dedupe_ttl_s)
    results = pipe.execute()[stamps:]
    fresh: list[str] = []
    seen_now: set[str] = set()
    tasks: list[tuple[str, tuple[Any, ...]]] = []
    for (n, dedupe, task_name, entity_id), was_set in zip(routed, results, strict=True):
        out = outs[n]
        if not was_set or dedupe in seen_now:
            out.duplicates += 1
            continue
        seen_now.add(dedupe)
        fresh.append(dedupe)
        out.tasks.extend((task_name, (entity_id, conn)) for conn in connections)
        out.enqueued += 1
    for out in outs:
        tasks.extend(out.tasks)
    if tasks:
        try:
            send_many(tasks)
        except Exception:
            r.delete(*fresh)  # let ServiceTrade's retry enqueue them
            raise
    return outs


@dataclass(frozen=True)
class _Pending:
    """A parsed delivery waiting for its group commit."""

    message_id: str
    events: Sequence[WebhookEvent]
    #: its inbox rows ``(connection, task, source id)``
    durable: list[tuple[str, str, str]]


class _LedgerDown(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class _BrokerDown(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True)
class _Answer:
    """An HTTP answer of the webhook route: JSON for a dict, plain text for a string."""

    status: int
    content: dict[str, Any] | str

    def encoded(self) -> tuple[bytes, bytes]:
        """(content type, body), as FastAPI's ``JSONResponse``/``PlainTextResponse`` make them."""
        if isinstance(self.content, str):
            return b"text/plain; charset=utf-8", self.content.encode()
        body = json.dumps(self.content, ensure_ascii=False, separators=(",", ":"))
        return b"application/json", body.encode()


class _Disconnected(Exception):
    pass


WEBHOOK_PATH = "/webhooks/servicetrade/"
Handle = Callable[[str, str | None, AsyncIterator[bytes]], Awaitable[_Answer]]


class WebhookRoute:
    """``POST /webhooks/servicetrade/{secret}`` as plain ASGI: the secret is one non-empty path
    segment, as a path parameter is; ``IngestApp`` hands such requests to ``serve``."""

    def __init__(self, handle: Handle) -> None:
        self.handle = handle

    async def serve(self, secret: str, scope: Scope, receive: Receive, send: AsgiSend) -> None:
        declared = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = value.decode("latin-1")
                break

        async def chunks() -> AsyncIterator[bytes]:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise _Disconnected
                yield message.get("body", b"")
                if not message.get("more_body", False):
                    return

        try:
            answer = await self.handle(secret, declared, chunks())
        except _Disconnected:
            return  # nobody to answer; nothing was stored or enqueued
        content_type, body = answer.encoded()
        await send(
            {
                "type": "http.response.start",
                "status": answer.status,
                "headers": [
                    (b"content-length", str(len(body)).encode()),
                    (b"content-type", content_type),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class IngestApp(FastAPI):
    """The ingest's FastAPI app with its webhook route ahead of every layer FastAPI and
    Starlette run per request (telemetry check, error and body-limit middleware, routing,
    dependencies): for a single-event delivery those cost more CPU than the webhook's own work
    (P1). An exception the handler does not answer reaches the server, which answers 500 as
    Starlette's error middleware would. Any other request, and the lifespan, go to FastAPI."""

    webhook_route: WebhookRoute | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: AsgiSend) -> None:
        route = self.webhook_route
        if route is not None and scope["type"] == "http":
            secret = _webhook_secret(scope)
            if secret is not None:
                await route.serve(secret, scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def _webhook_secret(scope: Scope) -> str | None:
    """The secret segment of a ``POST /webhooks/servicetrade/{secret}``, else None."""
    if scope["method"] != "POST":
        return None
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    if not path.startswith(WEBHOOK_PATH):
        return None
    secret = path[len(WEBHOOK_PATH) :]
    return secret if secret and "/" not in secret else None


class LedgerWakeups:
    """The production ``RecordWakeups``: the ledger's inbox, ONE transaction per call (one
    call per group commit, covering every delivery of the group; ``Ledger.inbox_put``). The
    ledger is opened on first use and closed with the app (``close``)."""

    def __init__(self, settings: Settings) -> None:
        self.url = settings.database_url
        self.due_after_s = float(settings.reliability.pending_due_after_s)
        self._ledger: Any = None

    def __call__(self, entries: list[tuple[str, str, str]]) -> None:
        if self._ledger is None:
            from worker.ledger import Ledger, make_engine

            # answered 2xx means stored: on SQLite, synced to disk at every commit
            self._ledger = Ledger(self.url, engine=make_engine(self.url, durable_commits=True))
        self._ledger.inbox_put(entries, due_after_s=self.due_after_s)

    def close(self) -> None:
        if self._ledger is not None:
            self._ledger.dispose()
            self._ledger = None


def ledger_wakeups(settings: Settings) -> RecordWakeups:
    """The ledger's inbox as the ingest's ``RecordWakeups`` (``LedgerWakeups``)."""
    return LedgerWakeups(settings)


def create_ingest_app(
    settings: Settings,
    *,
    redis_client: redis.Redis | None = None,
    send: Send | None = None,
    ledger_ping: Callable[[], None] | None = None,
    record_wakeups: RecordWakeups | None = None,
) -> FastAPI:
    """The ingest ASGI app. ``send`` enqueues a task by name (Celery by default);
    ``record_wakeups`` stores wake-ups durably before the answer (the ledger's inbox by default).
    """
    wakeups = record_wakeups or ledger_wakeups(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:  # the ingest's own ledger connections, closed with the server
            close = getattr(wakeups, "close", None)
            if close is not None:
                close()

    app = IngestApp(
        title="stsync ingest", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan
    )
    max_body = settings.ingest.max_body_bytes
    ttl = settings.ingest.dedupe_ttl_s
    connections = settings.auto_sync_connections()
    seen_prefix = f"{settings.redis_key_prefix}{DEDUPE_PREFIX}"
    cache_ttl = settings.servicetrade.read_cache_ttl_s

    def _redis() -> redis.Redis:
        nonlocal redis_client
        if redis_client is None:
            from worker.celery_app import resolve_broker_url

            redis_client = redis.Redis.from_url(
                resolve_broker_url(settings), socket_connect_timeout=2, socket_timeout=2
            )
        return redis_client

    def _send(name: str, args: tuple[Any, ...]) -> None:
        if send is not None:
            send(name, args)
            return
        from worker.celery_app import app as celery_app

        celery_app.send_task(
            name,
            args=args,
            retry=True,
            retry_policy={"max_retries": 1, "interval_start": 0, "interval_step": 0.2},
        )

    publisher: BatchPublisher | None = None

    def _publisher() -> BatchPublisher:
        nonlocal publisher
        if publisher is None:
            from worker.celery_app import app as celery_app

            publisher = BatchPublisher(celery_app, _redis(), settings.redis_key_prefix)
        return publisher

    def _send_many(tasks: Sequence[tuple[str, tuple[Any, ...]]]) -> None:
        if send is not None:
            for name, args in tasks:
                send(name, args)
            return
        _publisher().send_many(tasks)

    def _enqueue_once(
        stamps: Sequence[tuple[str, str]],
        stamp_ttl: int,
        events: Sequence[tuple[str, Sequence[tuple[str, tuple[Any, ...]]]]],
        dedupe_ttl: int,
    ) -> list[bool] | None:
        if send is not None:
            return None  # an injected sender (tests) takes the tasks one by one
        pub = _publisher()
        if not pub.can_enqueue_once({name for _, tasks in events for name, _ in tasks}):
            return None
        return pub.enqueue_once(stamps, stamp_ttl, events, dedupe_ttl)

    def _flush(pending: list[_Pending]) -> list[Accepted | BaseException]:
        """One group commit (ingest/group.py), in a worker thread: the inbox rows of every
        delivery in ONE ledger transaction, then their dedupe and tasks in one Redis pipeline
        each. Nothing of a delivery is acknowledged before both returned."""
        try:
            wakeups([entry for p in pending for entry in p.durable])
        except Exception as exc:  # noqa: BLE001 - not stored means not acknowledged
            return [_LedgerDown(type(exc).__name__) for _ in pending]
        try:
            return list(
                accept_deliveries(
                    _redis(),
                    [(p.message_id, p.events) for p in pending],
                    connections=connections,
                    seen_prefix=seen_prefix,
                    dedupe_ttl_s=ttl,
                    key_prefix=settings.redis_key_prefix,
                    cache_ttl_s=cache_ttl,
                    send_many=_send_many,
                    enqueue_once=_enqueue_once,
                )
            )
        except Exception as exc:  # noqa: BLE001 - any broker trouble means "try again later"
            return [_BrokerDown(type(exc).__name__) for _ in pending]

    group: GroupCommit[_Pending, Accepted] = GroupCommit(
        _flush, max_group=settings.ingest.group_commit_max
    )
    app.state.group_commit = group

    async def webhook(secret: str, declared: str | None, chunks: AsyncIterator[bytes]) -> _Answer:
        """POST /webhooks/servicetrade/{secret}: the answer to one delivery."""
        started = time.perf_counter()
        if not _secret_ok(secret, settings):
            return _Answer(404, "not found")
        if declared and declared.isdigit() and int(declared) > max_body:
            return _Answer(413, f"body over {max_body} bytes")
        body = bytearray()
        async for chunk in chunks:
            body.extend(chunk)
            if len(body) > max_body:
                return _Answer(413, f"body over {max_body} bytes")
        try:
            delivery = WebhookDelivery.model_validate_json(bytes(body))
            duplicate = _duplicate_key(bytes(body))
        except ValidationError as exc:
            msg = _validation_message(exc)
            log.warning("webhook rejected", extra={"outcome": "rejected", "detail": msg[:300]})
            return _Answer(400, {"error": f"malformed delivery: {msg}"})
        if duplicate is not None:
            msg = f"key {duplicate[:64]!r} appears twice in one object"
            log.warning("webhook rejected", extra={"outcome": "rejected", "detail": msg})
            return _Answer(400, {"error": f"malformed delivery: {msg}"})
        durable = [
            (conn, route[0], str(event.entity.id))
            for event in delivery.data
            if (route := ENTITY_TASKS.get(event.entity.type)) is not None
            and event.action in SYNC_ACTIONS
            for conn in connections
        ]
        try:
            accepted = await group.submit(
                _Pending(delivery.message_id, delivery.data, durable), weight=len(delivery.data)
            )
        except _LedgerDown as exc:
            log.error(
                "webhook not stored: ledger unavailable",
                extra={"outcome": "ledger_down", "detail": exc.detail},
            )
            return _Answer(503, {"error": "ledger unavailable; retry later"})
        except Exception as exc:  # noqa: BLE001 - any broker trouble means "try again later"
            detail = exc.detail if isinstance(exc, _BrokerDown) else type(exc).__name__
            log.error(
                "webhook not enqueued: broker unavailable",
                extra={"outcome": "broker_down", "detail": detail},
            )
            return _Answer(503, {"error": "broker unavailable; retry later"})
        log.info(
            "webhook accepted",
            extra={
                "outcome": "accepted",
                "message_id": delivery.message_id,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                **accepted.counts(),
            },
        )
        return _Answer(202, accepted.counts())

    app.webhook_route = WebhookRoute(webhook)

    @app.get("/healthz")
    def healthz() -> Response:
        status: dict[str, str] = {}
        try:
            _redis().ping()
            status["broker"] = "ok"
        except Exception as exc:  # noqa: BLE001
            status["broker"] = f"down: {type(exc).__name__}"
        try:
            if ledger_ping is not None:
                ledger_ping()
            else:
                from worker.ledger import make_engine

                with make_engine(settings.database_url).connect() as c:
                    c.execute(text("select 1"))
            status["ledger"] = "ok"
        except Exception as exc:  # noqa: BLE001
            status["ledger"] = f"down: {type(exc).__name__}"
        code = 200 if all(v == "ok" for v in status.values()) else 503
        return JSONResponse(status, status_code=code)

    @app.post("/jobs/{job_id}/send")
    async def send_job(job_id: int, request: Request, connection: str | None = None) -> Response:
        """ "Send Job to Spectrum" (F4/F11): enqueue the job's send for a named connection."""
        token = settings.ingest.send_job_token
        given = request.headers.get("x-stsync-token", "")
        if token is None or not hmac.compare_digest(
            given.encode(), token.get_secret_value().encode()
        ):
            return PlainTextResponse("unauthorized", status_code=401)
        if job_id < 1 or job_id > 2**63 - 1:
            return JSONResponse({"error": "job id out of range"}, status_code=400)
        name = connection or settings.default_connection
        if name not in settings.connections:
            return JSONResponse(
                {
                    "error": f"unknown connection {name!r}; configured: "
                    f"{', '.join(sorted(settings.connections))}"
                },
                status_code=400,
            )
        try:
            _send(WORK_ORDER.task, (job_id, name))
        except Exception:  # noqa: BLE001
            return JSONResponse({"error": "broker unavailable; retry later"}, status_code=503)
        return JSONResponse(
            {"enqueued": WORK_ORDER.task, "job": job_id, "connection": name}, status_code=202
        )

    return app
