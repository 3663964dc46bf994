"""ServiceTrade simulator: webhook registration and delivery (reference §7)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sandbox.faults import FaultConfig, FaultInjector
from sandbox.servicetrade.app import create_app
from sandbox.servicetrade.state import STState
from tests.sandbox.test_servicetrade_support import (
    API_USER,
    CUSTOMER,
    INVOICE,
    JOB,
    LOC,
    T0,
    TIMECARD,
    VENDOR,
    Receiver,
    Sim,
    client_credentials,
    data,
    make_sim,
    register_webhook,
    seed,
)


@pytest.fixture
def sim() -> Iterator[Sim]:
    s, close = make_sim()
    yield s
    close()


# --- registration ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "item",
    [
        {"entityType": 3, "actions": ["created", "updated"]},
        {"entityType": 3, "events": ["created", "updated"]},
        {"entityType": 3, "eventType": ["created", "updated"]},
        {"entityType": 3, "eventType": "created,updated"},
        {"entityType": "job", "actions": ["created", "updated"]},
    ],
)
def test_registration_accepts_each_key_and_echoes_actions(sim: Sim, item: dict[str, Any]) -> None:
    hook = data(
        sim.post("/api/webhook", {"hookUrl": "https://r.example/h/s", "entityEvents": [item]})
    )
    assert hook["entityEvents"] == [{"entityType": 3, "actions": ["created", "updated"]}]
    assert hook["enabled"] is True and hook["includeChangesets"] is False
    assert hook["confirmed"] is True
    assert hook["uri"].endswith(f"/api/webhook/{hook['id']}")
    listed = data(sim.get("/api/webhook"))["webhooks"]
    assert [w["id"] for w in listed] == [hook["id"]]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"entityEvents": [{"entityType": 3, "actions": ["created"]}]}, "hookUrl"),
        (
            {"hookUrl": "ftp://x", "entityEvents": [{"entityType": 3, "actions": ["created"]}]},
            "hookUrl",
        ),
        ({"hookUrl": "https://x/h"}, "entityEvents"),
        (
            {
                "hookUrl": "https://x/h",
                "entityEvents": [{"entityType": 777, "actions": ["created"]}],
            },
            "entityEvents[0].entityType",
        ),
        (
            {"hookUrl": "https://x/h", "entityEvents": [{"entityType": 3, "actions": ["moved"]}]},
            "entityEvents[0].actions",
        ),
    ],
)
def test_registration_validation(sim: Sim, body: dict[str, Any], field: str) -> None:
    response = sim.post("/api/webhook", body)
    assert response.status_code == 400
    assert field in response.json()["messages"]["validation"]


def test_webhook_put_and_delete(sim: Sim) -> None:
    hook = register_webhook(sim, [3])
    changed = data(sim.put(f"/api/webhook/{hook['id']}", {"enabled": False}))
    assert changed["enabled"] is False
    moved = sim.put(f"/api/webhook/{hook['id']}", {"hookUrl": "https://elsewhere/h"})
    assert moved.status_code == 400  # §7: hookUrl is immutable
    assert sim.delete(f"/api/webhook/{hook['id']}").status_code == 200
    assert data(sim.get("/api/webhook"))["webhooks"] == []


# --- delivery shape, batching, routing ------------------------------------------------------------
def test_delivery_shape_with_changeset(sim: Sim) -> None:
    register_webhook(sim, [3], changesets=True)
    data(sim.put(f"/api/job/{JOB}", {"status": "completed"}))
    sim.flush()
    assert len(sim.receiver.calls) == 1
    url, body = sim.receiver.calls[0]
    assert url == "https://receiver.example/hooks/st/secret"
    assert set(body) == {"messageId", "timestamp", "data"}
    uuid.UUID(body["messageId"])
    assert isinstance(body["timestamp"], str) and body["timestamp"].isdigit()
    (event,) = body["data"]
    assert event["action"] == "updated"
    assert event["timestamp"] == T0
    assert event["userId"] == API_USER
    assert event["entity"] == {
        "type": "job",
        "id": JOB,
        "uri": f"http://127.0.0.1:8801/api/job/{JOB}",
    }
    assert {"field": "status", "oldValue": "scheduled", "newValue": "completed"} in event[
        "changeset"
    ]


def test_no_changeset_without_include_changesets(sim: Sim) -> None:
    register_webhook(sim, [3], changesets=False)
    data(sim.put(f"/api/job/{JOB}", {"status": "completed"}))
    sim.flush()
    (event,) = sim.receiver.events
    assert "changeset" not in event


def test_events_are_batched_into_one_delivery_under_load(sim: Sim) -> None:
    register_webhook(sim, [3, 6])
    # a window no loaded machine outlasts between the three changes; flush() ends it at once
    # (with 0.5 s the changes fell into two deliveries now and then under load)
    sim.app.state.webhooks.batch_window_s = 60.0
    job = data(sim.post("/api/job", {"locationId": LOC, "vendorId": VENDOR, "type": "repair"}))
    data(sim.put(f"/api/invoice/{INVOICE}", {"status": "processed"}))
    sim.state.delete("job", job["id"])
    sim.flush()
    assert len(sim.receiver.calls) == 1
    summary = [(e["entity"]["type"], e["entity"]["id"], e["action"]) for e in sim.receiver.events]
    assert summary == [
        ("job", job["id"], "created"),
        ("invoice", INVOICE, "updated"),
        ("job", job["id"], "deleted"),
    ]


def test_routing_by_entity_type_and_action(sim: Sim) -> None:
    register_webhook(sim, [6], actions=["updated"])
    data(sim.post("/api/job", {"locationId": LOC, "vendorId": VENDOR, "type": "repair"}))
    data(sim.post("/api/invoice", {"jobId": JOB}))  # created: not subscribed
    data(sim.put(f"/api/invoice/{INVOICE}", {"status": "failed"}))
    data(sim.post("/api/comment", {"entityType": 6, "entityId": INVOICE, "content": "why"}))
    sim.flush()
    summary = [(e["entity"]["type"], e["action"]) for e in sim.receiver.events]
    assert summary == [("invoice", "updated")]


def test_every_enabled_webhook_gets_a_copy_and_disabled_ones_none(sim: Sim) -> None:
    register_webhook(sim, [5])
    second = data(
        sim.post(
            "/api/webhook",
            {
                "hookUrl": "https://two.example/h",
                "entityEvents": [{"entityType": 5, "actions": ["updated"]}],
            },
        )
    )
    off = register_webhook(sim, [5])
    data(sim.put(f"/api/webhook/{off['id']}", {"enabled": False}))
    data(sim.put(f"/api/company/{CUSTOMER}", {"phone": "9195550100"}))
    sim.flush()
    urls = sorted(url for url, _ in sim.receiver.calls)
    assert urls == ["https://receiver.example/hooks/st/secret", second["hookUrl"]]


def test_state_mutations_from_test_code_emit_events(sim: Sim) -> None:
    register_webhook(sim, [11])
    created = sim.state.create(
        "location", {"name": "Direct", "company": {"id": CUSTOMER}}, user_id=TIMECARD
    )
    sim.state.update("location", created["id"], {"name": "Direct 2"})
    sim.state.update("location", created["id"], {"name": "Direct 2"})  # no change: no event
    sim.state.delete("location", created["id"])
    sim.flush()
    summary = [(e["action"], e["userId"]) for e in sim.receiver.events]
    assert summary == [("created", TIMECARD), ("updated", None), ("deleted", None)]
    changes = sim.receiver.events[1]["changeset"]
    assert changes == [{"field": "name", "oldValue": "Direct", "newValue": "Direct 2"}]


def test_a_user_change_emits_a_user_event(sim: Sim) -> None:
    """A salesperson or technician fixed in ServiceTrade (its externalIds) is announced as a
    ``user`` ``updated`` event (entity type 4): stsync wakes what failed on it (F21)."""
    register_webhook(sim, [4])
    sim.state.update("user", API_USER, {"externalIds": {"spectrum": "S09"}})
    sim.flush()
    summary = [(e["entity"]["type"], e["entity"]["id"], e["action"]) for e in sim.receiver.events]
    assert summary == [("user", API_USER, "updated")]


def test_timecard_approval_event(sim: Sim) -> None:
    register_webhook(sim, [50])  # assumptions: timecard entity type 50
    data(sim.put(f"/api/timecard/{TIMECARD}", {"status": "approved"}))
    sim.flush()
    (event,) = sim.receiver.events
    assert event["entity"]["type"] == "timecard" and event["entity"]["id"] == TIMECARD
    assert event["action"] == "updated"
    assert {"field": "status", "oldValue": "submitted", "newValue": "approved"} in event[
        "changeset"
    ]


# --- delivery rules: retries, 4xx, drops ----------------------------------------------------------
def _one_update(sim: Sim) -> None:
    register_webhook(sim, [3])
    data(sim.put(f"/api/job/{JOB}", {"description": "x"}))
    sim.flush()


def test_receiver_failing_twice_then_succeeding_gets_three_attempts() -> None:
    sim, close = make_sim(receiver=Receiver(statuses=[503, 500]))
    try:
        _one_update(sim)
        assert len(sim.receiver.calls) == 3
        assert len({body["messageId"] for _, body in sim.receiver.calls}) == 1
        counters = sim.app.state.webhooks.counters()
        assert (
            counters["sent"],
            counters["delivered"],
            counters["failed_attempts"],
            counters["dropped"],
        ) == (3, 1, 2, 0)
    finally:
        close()


def test_receiver_always_failing_is_dropped_after_three_attempts() -> None:
    failing: list[int | Exception] = [ConnectionError("refused"), 502]
    sim, close = make_sim(receiver=Receiver(statuses=failing, default=503))
    try:
        _one_update(sim)
        assert len(sim.receiver.calls) == 3
        counters = sim.app.state.webhooks.counters()
        assert (
            counters["sent"],
            counters["delivered"],
            counters["failed_attempts"],
            counters["dropped"],
            counters["dropped_after_retries"],
        ) == (3, 0, 3, 1, 1)
        history = sim.client.get("/_sandbox/webhooks").json()["history"]
        assert [h["attempt"] for h in history] == [1, 2, 3]
        assert "ConnectionError" in history[0]["error"]
    finally:
        close()


def test_4xx_counts_as_delivered() -> None:
    sim, close = make_sim(receiver=Receiver(default=404))
    try:
        _one_update(sim)
        assert len(sim.receiver.calls) == 1
        counters = sim.app.state.webhooks.counters()
        assert counters["delivered"] == 1 and counters["failed_attempts"] == 0
    finally:
        close()


def test_duplicates_knob_sends_each_delivery_one_to_n_times() -> None:
    sim, close = make_sim(faults=FaultConfig(seed=3, webhook_duplicates_max=3))
    try:
        register_webhook(sim, [3])
        for i in range(12):
            data(sim.put(f"/api/job/{JOB}", {"description": f"v{i}"}))
            sim.flush()
        per_message: dict[str, int] = {}
        for _, body in sim.receiver.calls:
            per_message[body["messageId"]] = per_message.get(body["messageId"], 0) + 1
        assert len(per_message) == 12
        assert set(per_message.values()) <= {1, 2, 3}
        assert max(per_message.values()) > 1
        counters = sim.app.state.webhooks.counters()
        assert counters["duplicates"] == len(sim.receiver.calls) - 12
    finally:
        close()


def test_drop_knob_drops_without_sending() -> None:
    sim, close = make_sim(faults=FaultConfig(seed=1, webhook_drop_rate=1.0))
    try:
        _one_update(sim)
        assert sim.receiver.calls == []
        counters = sim.app.state.webhooks.counters()
        assert counters["dropped"] == 1 and counters["dropped_by_fault"] == 1
        assert counters["sent"] == 0
    finally:
        close()


def test_reorder_knob_shuffles_events() -> None:
    def run(reorder: bool) -> list[int]:
        sim, close = make_sim(faults=FaultConfig(seed=5, webhook_reorder=reorder))
        try:
            register_webhook(sim, [5])
            sim.app.state.webhooks.batch_window_s = 0.5
            ids = [data(sim.post("/api/company", {"name": f"C{i}"}))["id"] for i in range(20)]
            sim.flush()
            got = [e["entity"]["id"] for e in sim.receiver.events]
            assert sorted(got) == sorted(ids)
            return [ids.index(i) for i in got]
        finally:
            close()

    assert run(False) == list(range(20))
    assert run(True) != list(range(20))


def test_sandbox_webhook_routes(sim: Sim) -> None:
    register_webhook(sim, [3])
    data(sim.put(f"/api/job/{JOB}", {"description": "y"}))
    flushed = sim.client.post("/_sandbox/webhooks/flush", params={"timeout": 5})
    assert flushed.status_code == 200
    assert flushed.json()["drained"] is True
    assert flushed.json()["counters"]["delivered"] == 1
    status = sim.client.get("/_sandbox/webhooks").json()
    assert status["counters"]["sent"] == 1
    assert status["history"][0]["status"] == 200
    assert "hookUrl" not in status["history"][0]  # the URL holds the receiver's secret


# --- a real loopback receiver (default transport) -------------------------------------------------
def test_real_http_delivery_to_a_loopback_receiver() -> None:
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            length = int(self.headers["Content-Length"])
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        state = STState()
        state.load(seed())
        app = create_app(state, FaultInjector())
        with TestClient(app) as client:
            token = client_credentials(client)["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            port = server.server_address[1]
            hook = {
                "hookUrl": f"http://127.0.0.1:{port}/hooks/secret",
                "entityEvents": [{"entityType": 3, "actions": ["updated"]}],
            }
            assert client.post("/api/webhook", json=hook, headers=headers).status_code == 200
            assert (
                client.put(f"/api/job/{JOB}", json={"name": "Renamed"}, headers=headers).status_code
                == 200
            )
            started = time.monotonic()
            app.state.webhooks.flush(10)
            assert time.monotonic() - started < 5
        assert len(received) == 1
        assert received[0]["data"][0]["entity"]["id"] == JOB
        assert app.state.webhooks.counters()["delivered"] == 1
    finally:
        server.shutdown()
        server.server_close()


def test_default_transport_opens_its_client_on_first_delivery_only() -> None:
    from sandbox.servicetrade.webhooks import _HttpDeliver

    transport = _HttpDeliver(1.0)
    assert transport._client is None  # nothing built for an app that never delivers
    transport.close()
    with pytest.raises(RuntimeError, match="closed"):
        transport("http://127.0.0.1:9/hooks", b"{}")
    assert transport._client is None


def test_delivery_thread_is_reused_between_bursts_and_ends_on_close() -> None:
    from sandbox.servicetrade.state import ChangeEvent
    from sandbox.servicetrade.webhooks import WebhookEmitter

    emitter = WebhookEmitter(STState(), FaultInjector(), deliver=lambda url, body: 200)
    before = set(threading.enumerate())  # other tests' emitters may still be idling

    def burst(n: int) -> list[threading.Thread]:
        event = ChangeEvent("updated", "job", n, f"https://x/api/job/{n}", None, 0, ())
        emitter.enqueue(event)
        emitter.flush(10)
        # drained, yet the thread idles for the next event instead of exiting
        assert emitter._running
        return [t for t in threading.enumerate() if t.name == "st-webhooks" and t not in before]

    first = burst(1)
    assert len(first) == 1
    assert burst(2) == first  # the next event did not start another thread
    assert emitter.counters()["events_queued"] == 2
    emitter.close()
    first[0].join(5)
    assert not first[0].is_alive()
