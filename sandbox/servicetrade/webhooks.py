"""Outgoing webhooks of the simulator (reference §7), with the delivery faults of ``FaultConfig``.

Every committed mutation arrives as a ``ChangeEvent``. A background thread batches the events of a
short window, builds one delivery per matching webhook
(``{"messageId", "timestamp", "data": [event, ...]}``) and POSTs it: a 2xx–4xx answer counts as
delivered, a 5xx, timeout or connection error is retried, at most ``WEBHOOK_MAX_ATTEMPTS`` tries in
total, then the delivery is dropped and counted. Fault knobs: ``webhook_duplicates_max`` (each
delivery is sent 1..N times), ``webhook_reorder`` (pending deliveries and the events inside them are
shuffled), ``webhook_drop_rate`` (a delivery copy is dropped without being sent).

The thread runs only while there is work and exits when idle.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from sandbox.faults import FaultInjector
from sandbox.servicetrade import assumptions, records
from sandbox.servicetrade.state import ChangeEvent, STState

log = logging.getLogger(__name__)

Deliver = Callable[[str, bytes], int]


@dataclass
class _Delivery:
    hook_url: str
    webhook_id: int
    body: bytes
    message_id: str
    events: int


def entity_type_number(value: Any) -> int | None:
    """An ``entityType`` given as a number, numeric string or lowercase name; None if unknown."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value in records.ENTITY_TYPE_NAMES else None
    if isinstance(value, str):
        text = value.strip().lower()
        if text.isdigit():
            return entity_type_number(int(text))
        return records.ENTITY_TYPES.get(text, records.OTHER_ENTITY_TYPES.get(text))
    return None


def webhook_wants(webhook: Mapping[str, Any], resource: str, action: str) -> bool:
    """Whether an enabled webhook's ``entityEvents`` cover this entity type and action."""
    if webhook.get("enabled") is False:
        return False
    number = records.ENTITY_TYPES.get(resource)
    if number is None:
        return False
    for item in webhook.get("entityEvents") or []:
        if not isinstance(item, Mapping) or entity_type_number(item.get("entityType")) != number:
            continue
        if action in _actions_of(item):
            return True
    return False


def _actions_of(item: Mapping[str, Any]) -> list[str]:
    for key in assumptions.WEBHOOK_ACTION_KEYS:
        value = item.get(key)
        if value is None:
            continue
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list):
            return [str(part) for part in value]
    return []


#: how long the delivery thread waits for new events before it exits (it restarts on demand)
_IDLE_LINGER_S = 5.0


class _HttpDeliver:
    """Default transport: a real POST with a ~5 s timeout (one client per emitter thread use)."""

    def __init__(self, timeout_s: float) -> None:
        self._timeout_s = timeout_s
        self._client: httpx.Client | None = None
        self._closed = False
        self._lock = threading.Lock()

    def _open(self) -> httpx.Client:
        # Built on the first delivery: an httpx.Client loads the TLS trust store (~0.2 s of CPU),
        # which every app that never sends a webhook (most tests, the benchmarks) paid at start.
        with self._lock:
            if self._closed:
                raise RuntimeError("the webhook transport is closed")
            if self._client is None:
                # the sandbox delivers to loopback receivers: never through an environment proxy
                self._client = httpx.Client(timeout=self._timeout_s, trust_env=False)
            return self._client

    def __call__(self, hook_url: str, body: bytes) -> int:
        response = self._open().post(
            hook_url, content=body, headers={"Content-Type": "application/json"}
        )
        return response.status_code

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._client is not None:
                self._client.close()


class WebhookEmitter:
    """Queues change events and delivers them to registered webhooks in a background thread."""

    def __init__(
        self,
        state: STState,
        injector: FaultInjector,
        *,
        deliver: Deliver | None = None,
        timeout_s: float = assumptions.WEBHOOK_TIMEOUT_S,
        max_attempts: int = assumptions.WEBHOOK_MAX_ATTEMPTS,
        retry_delays_s: tuple[float, ...] = assumptions.WEBHOOK_RETRY_DELAYS_S,
        batch_window_s: float = assumptions.WEBHOOK_BATCH_WINDOW_S,
        max_events_per_delivery: int = assumptions.WEBHOOK_MAX_EVENTS_PER_DELIVERY,
        history_size: int = 2000,
    ) -> None:
        self.state = state
        self.injector = injector
        self._http: _HttpDeliver | None = None
        if deliver is None:
            self._http = _HttpDeliver(timeout_s)
            deliver = self._http
        self._deliver = deliver
        self.max_attempts = max_attempts
        self.retry_delays_s = retry_delays_s
        self.batch_window_s = batch_window_s
        self.max_events_per_delivery = max_events_per_delivery
        self._cond = threading.Condition()
        self._events: deque[ChangeEvent] = deque()
        self._pending: deque[_Delivery] = deque()
        self._busy = False  # a batch is being built or a delivery is in flight
        self._running = False
        self._flush_now = False
        self._closed = False
        #: every attempt: {"messageId", "hookUrl", "attempt", "status", "error", "events", "at"}
        self.history: deque[dict[str, Any]] = deque(maxlen=history_size)
        self.sent = 0
        self.delivered = 0
        self.failed_attempts = 0
        self.dropped = 0
        self.dropped_by_fault = 0
        self.dropped_after_retries = 0
        self.duplicates = 0
        self.events_queued = 0
        self.deliveries_built = 0

    # --- intake ---------------------------------------------------------------------------------
    def enqueue(self, event: ChangeEvent) -> None:
        """``STState`` listener: queue one committed change (cheap; runs under the state lock)."""
        with self._cond:
            if self._closed:
                return
            self._events.append(event)
            self.events_queued += 1
            if not self._running:
                self._running = True
                threading.Thread(target=self._run, name="st-webhooks", daemon=True).start()
            self._cond.notify_all()

    # --- control --------------------------------------------------------------------------------
    def flush(self, timeout: float = 10.0) -> None:
        """Deliver everything queued now (skipping the batch window) and wait until the queue is
        drained and nothing is in flight. ``TimeoutError`` if that takes longer than ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._flush_now = True
            self._cond.notify_all()
            while self._events or self._pending or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"webhook queue not drained after {timeout} s: {len(self._events)} events, "
                        f"{len(self._pending)} deliveries pending"
                    )
                self._cond.wait(min(left, 0.05))
            self._flush_now = False

    def counters(self) -> dict[str, int]:
        with self._cond:
            return {
                "sent": self.sent,
                "delivered": self.delivered,
                "failed_attempts": self.failed_attempts,
                "dropped": self.dropped,
                "dropped_by_fault": self.dropped_by_fault,
                "dropped_after_retries": self.dropped_after_retries,
                "duplicates": self.duplicates,
                "events_queued": self.events_queued,
                "deliveries_built": self.deliveries_built,
                "pending_events": len(self._events),
                "pending_deliveries": len(self._pending),
            }

    def reset(self) -> None:
        """Forget queued work, counters and history (a delivery already in flight finishes)."""
        with self._cond:
            self._events.clear()
            self._pending.clear()
            self.history.clear()
            self.sent = self.delivered = self.failed_attempts = 0
            self.dropped = self.dropped_by_fault = self.dropped_after_retries = 0
            self.duplicates = self.events_queued = self.deliveries_built = 0
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._events.clear()
            self._pending.clear()
            self._cond.notify_all()
        if self._http is not None:
            self._http.close()

    # --- worker ---------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                if self._events and not self._pending:
                    # collect what happens in the batch window after the first event (a flush
                    # cuts the window short; new events do not)
                    deadline = time.monotonic() + self.batch_window_s
                    while not self._flush_now and not self._closed:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        self._cond.wait(left)
                if not self._events and not self._pending:
                    self._busy = False
                    self._cond.notify_all()
                    # Linger before exiting: the thread is started from enqueue, inside a
                    # request and under the store's lock, and Thread.start waits until the new
                    # thread runs - on a loaded machine that cost the ServiceTrade write ~ms.
                    idle_until = time.monotonic() + _IDLE_LINGER_S
                    while not self._events and not self._closed:
                        left = idle_until - time.monotonic()
                        if left <= 0:
                            break
                        self._cond.wait(left)
                    if self._closed or not self._events:
                        self._running = False
                        return
                    continue
                self._busy = True
                batch: list[ChangeEvent] = []
                while self._events and len(batch) < self.max_events_per_delivery:
                    batch.append(self._events.popleft())
            if batch:
                self._plan(batch)
            with self._cond:
                delivery = self._pending.popleft() if self._pending else None
            if delivery is not None:
                self._send(delivery)
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    def _plan(self, batch: list[ChangeEvent]) -> None:
        """Turn a batch of events into deliveries (one per matching webhook, copies per the
        duplicates knob) and queue them, shuffled when the reorder knob is on."""
        with self.state.lock:
            webhooks = [dict(w) for w in self.state.scan("webhook")]
        cfg = self.injector.config
        rng = self.injector.dice()
        planned: list[_Delivery] = []
        for webhook in webhooks:
            data = [
                self._event_json(e, bool(webhook.get("includeChangesets")))
                for e in batch
                if webhook_wants(webhook, e.resource, e.action)
            ]
            if not data or not webhook.get("hookUrl"):
                continue
            if cfg.webhook_reorder:
                rng.shuffle(data)
            message_id = str(uuid.uuid4())
            body = json.dumps(
                {"messageId": message_id, "timestamp": str(int(self.state.clock())), "data": data},
                separators=(",", ":"),
            ).encode()
            most = cfg.webhook_duplicates_max
            copies = rng.randint(1, most) if most > 1 else 1
            delivery = _Delivery(
                str(webhook["hookUrl"]), int(webhook["id"]), body, message_id, len(data)
            )
            planned.extend([delivery] * copies)
        with self._cond:
            self.deliveries_built += len({d.message_id for d in planned})
            self.duplicates += len(planned) - len({d.message_id for d in planned})
            self._pending.extend(planned)
            if cfg.webhook_reorder and len(self._pending) > 1:
                pending = list(self._pending)
                rng.shuffle(pending)
                self._pending = deque(pending)

    @staticmethod
    def _event_json(event: ChangeEvent, with_changeset: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "action": event.action,
            "timestamp": event.timestamp,
            "userId": event.user_id,
            "entity": {"type": event.resource, "id": event.id, "uri": event.uri},
        }
        if with_changeset:
            out["changeset"] = list(event.changeset)
        return out

    def _send(self, delivery: _Delivery) -> None:
        cfg = self.injector.config
        if cfg.webhook_drop_rate and self.injector.dice().random() < cfg.webhook_drop_rate:
            with self._cond:
                self.dropped += 1
                self.dropped_by_fault += 1
            self._remember(delivery, 0, None, "dropped by fault injection")
            return
        for attempt in range(1, self.max_attempts + 1):
            status: int | None = None
            error: str | None = None
            try:
                status = self._deliver(delivery.hook_url, delivery.body)
            except Exception as exc:  # noqa: BLE001 - any transport failure is a failed attempt
                error = f"{type(exc).__name__}: {exc}"
            ok = status is not None and 200 <= status < 500
            with self._cond:
                self.sent += 1
                if ok:
                    self.delivered += 1
                else:
                    self.failed_attempts += 1
            self._remember(delivery, attempt, status, error)
            if ok:
                return
            if attempt < self.max_attempts:
                delays = self.retry_delays_s
                delay = delays[min(attempt - 1, len(delays) - 1)] if delays else 0.0
                if delay:
                    time.sleep(delay)
        with self._cond:
            self.dropped += 1
            self.dropped_after_retries += 1
        log.info(
            "webhook delivery %s to webhook %s dropped after %s attempts",
            delivery.message_id,
            delivery.webhook_id,
            self.max_attempts,
        )

    def _remember(
        self, delivery: _Delivery, attempt: int, status: int | None, error: str | None
    ) -> None:
        with self._cond:
            self.history.append(
                {
                    "messageId": delivery.message_id,
                    "webhookId": delivery.webhook_id,
                    "attempt": attempt,
                    "status": status,
                    "error": error,
                    "events": delivery.events,
                    "at": time.time(),
                }
            )
