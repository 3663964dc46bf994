"""Shared helpers for the ServiceTrade simulator's contract tests (reference: servicetrade-api.md).

The expectations in these tests come from the reference document (sections cited per test), not
from any client, so they check the simulator against the API it imitates. This module holds no
tests: a small seed account, a controllable clock, a recording webhook receiver and a client
factory.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from sandbox import credentials
from sandbox.faults import FaultConfig, FaultInjector
from sandbox.servicetrade.app import create_app
from sandbox.servicetrade.state import STState

T0 = 1_735_000_000  # a fixed "now" (unix s) for the controllable clock
BIG_ID = 2_687_264_638_045_377  # a real-looking 16-digit ServiceTrade id (§3)

VENDOR = 10
CUSTOMER = 200
CUSTOMER_2 = BIG_ID
OFFICE = 11
LOC = 820
LOC_2 = 821
API_USER = 5
TECH = 7
JOB = 1001
JOB_DONE = 1002
JOB_CANCELED = 1003
SERVICE_LINE = 50
LIB_ITEM = 66
CONTRACT = 300
CONTRACT_OTHER = 301
JOB_ITEM = 5001
TIMECARD = 7001
TIMECARD_APPROVED = 7002
INVOICE = 4401


class Clock:
    """A settable time source for ``STState.clock`` and ``AuthStore.clock``."""

    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def seed() -> dict[str, list[dict[str, Any]]]:
    """A small account: one vendor with an office, two customers, jobs, items, time, an invoice."""
    return {
        "company": [
            {
                "id": VENDOR,
                "name": "Acme Fire",
                "isVendor": True,
                "isCustomer": False,
                "status": "active",
            },
            {
                "id": CUSTOMER,
                "name": "Burger Bistro Inc",
                "isCustomer": True,
                "status": "active",
                "address": {
                    "street": "1 Main St",
                    "city": "Durham",
                    "state": "NC",
                    "postalCode": "27701",
                },
            },
            {"id": CUSTOMER_2, "name": "Pizza Place", "isCustomer": True, "status": "active"},
        ],
        "location": [
            {"id": OFFICE, "name": "Durham Office", "company": {"id": VENDOR, "name": "Acme Fire"}},
            {
                "id": LOC,
                "name": "Burger Bistro #12",
                "company": {"id": CUSTOMER, "name": "x"},
                "address": {
                    "street": "1 Main St",
                    "city": "Durham",
                    "state": "NC",
                    "postalCode": "27701",
                },
                "offices": [{"id": OFFICE, "name": "Durham Office"}],
            },
            {
                "id": LOC_2,
                "name": "Pizza Place #1",
                "company": {"id": CUSTOMER_2},
                "address": {"street": "9 Elm", "city": "Raleigh", "state": "NC"},
            },
        ],
        "user": [
            {
                "id": API_USER,
                "name": "Api User",
                "email": credentials.ST_USERNAME,
                "status": "active",
            },
            {
                "id": TECH,
                "name": "Sam Tech",
                "email": "sam@example.com",
                "status": "active",
                "externalIds": {"spectrum": "E001"},
            },
        ],
        "serviceline": [
            {"id": SERVICE_LINE, "name": "Sprinkler", "trade": "Fire Protection", "abbr": "SP"}
        ],
        "libitem": [{"id": LIB_ITEM, "name": "Inspection Labor", "code": "LAB", "type": "labor"}],
        "contract": [
            {"id": CONTRACT, "name": "Bistro annual", "customer": {"id": CUSTOMER}},
            {"id": CONTRACT_OTHER, "name": "Pizza annual", "customer": {"id": CUSTOMER_2}},
        ],
        "job": [
            {
                "id": JOB,
                "number": 52311,
                "name": "Annual Inspection",
                "type": "inspection",
                "status": "scheduled",
                "location": {"id": LOC, "name": "Burger Bistro #12"},
                "customer": {"id": CUSTOMER, "name": "Burger Bistro Inc"},
                "vendor": {"id": VENDOR, "name": "Acme Fire"},
                "tags": [],
            },
            {
                "id": JOB_DONE,
                "number": 52312,
                "name": "Repair",
                "type": "repair",
                "status": "completed",
                "location": {"id": LOC},
                "customer": {"id": CUSTOMER},
                "vendor": {"id": VENDOR},
            },
            {
                "id": JOB_CANCELED,
                "number": 52313,
                "name": "Old",
                "type": "repair",
                "status": "canceled",
                "location": {"id": LOC_2},
                "customer": {"id": CUSTOMER_2},
                "vendor": {"id": VENDOR},
            },
        ],
        "jobitem": [
            {
                "id": JOB_ITEM,
                "name": "Sprinkler head",
                "quantity": 2,
                "cost": 10.0,
                "price": 45.5,
                "job": {"id": JOB, "number": 52311},
                "serviceLine": {"id": SERVICE_LINE, "abbr": "SP"},
            },
        ],
        "timecard": [
            {
                "id": TIMECARD,
                "status": "submitted",
                "approvedOn": None,
                "workDate": T0 - 86_400,
                "user": {"id": TECH, "name": "Sam Tech"},
                "entries": [
                    {
                        "id": 7101,
                        "kind": "labor",
                        "job": {"id": JOB, "number": 52311},
                        "serviceLine": {"id": SERVICE_LINE, "abbr": "SP"},
                        "hours": 2.5,
                        "payRate": 42.0,
                    }
                ],
            },
            {
                "id": TIMECARD_APPROVED,
                "status": "approved",
                "approvedOn": T0 - 3600,
                "workDate": T0 - 2 * 86_400,
                "user": {"id": TECH},
                "entries": [{"id": 7102, "kind": "generic", "label": "PTO", "hours": 8}],
            },
        ],
        "clockevent": [
            {
                "id": 8001,
                "eventTime": T0 - 7200,
                "activity": "onsite",
                "source": "mobile",
                "user": {"id": TECH, "name": "Sam Tech"},
                "job": {"id": JOB},
            },
            {
                "id": 8002,
                "eventTime": T0 - 3600,
                "activity": "offsite",
                "source": "mobile",
                "user": {"id": TECH, "name": "Sam Tech"},
                "job": {"id": JOB},
            },
            {
                "id": 8003,
                "eventTime": T0 - 3000,
                "activity": "enroute",
                "source": "ivr",
                "user": {"id": TECH, "name": "Sam Tech"},
                "job": {"id": JOB_DONE},
            },
        ],
        "invoice": [
            {
                "id": INVOICE,
                "name": "Invoice for Job 52311",
                "type": "invoice",
                "status": "pending_accounting",
                "invoiceNumber": None,
                "customer": {"id": CUSTOMER},
                "location": {"id": LOC},
                "job": {"id": JOB, "number": 52311},
                "items": [
                    {
                        "id": 1,
                        "description": "Inspection",
                        "quantity": 1,
                        "price": 450.0,
                        "taxRate": 7.0,
                    }
                ],
            },
        ],
    }


@dataclass
class Receiver:
    """A webhook receiver for ``create_app(deliver=...)``: records bodies, answers scripted codes.

    ``statuses`` are answered in order (then ``default``); an ``Exception`` in it is raised instead
    (a connection error).
    """

    statuses: list[int | Exception] = field(default_factory=list)
    default: int = 200
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, url: str, body: bytes) -> int:
        import json

        with self._lock:
            self.calls.append((url, json.loads(body)))
            answer = self.statuses.pop(0) if self.statuses else self.default
        if isinstance(answer, Exception):
            raise answer
        return answer

    @property
    def events(self) -> list[dict[str, Any]]:
        return [event for _, body in self.calls for event in body["data"]]


@dataclass
class Sim:
    """One simulator under test: app, store, injector, receiver, clock and a logged-in client."""

    app: FastAPI
    state: STState
    injector: FaultInjector
    receiver: Receiver
    clock: Clock
    client: TestClient
    headers: dict[str, str]

    def get(self, path: str, **params: Any) -> Any:
        return self.client.get(path, params=params, headers=self.headers)

    def post(self, path: str, body: Any) -> Any:
        return self.client.post(path, json=body, headers=self.headers)

    def put(self, path: str, body: Any) -> Any:
        return self.client.put(path, json=body, headers=self.headers)

    def delete(self, path: str) -> Any:
        return self.client.delete(path, headers=self.headers)

    def flush(self) -> None:
        self.app.state.webhooks.flush(10)


def client_credentials(client: TestClient, path: str = "/api/oauth2/token") -> dict[str, Any]:
    response = client.post(
        path,
        data={
            "grant_type": "client_credentials",
            "client_id": credentials.ST_CLIENT_ID,
            "client_secret": credentials.ST_CLIENT_SECRET,
        },
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def make_sim(
    *,
    seeded: bool = True,
    faults: FaultConfig | None = None,
    receiver: Receiver | None = None,
    configure: Callable[[STState], None] | None = None,
    **app_options: Any,
) -> tuple[Sim, Callable[[], None]]:
    """A started simulator and its closer (use through a fixture)."""
    clock = Clock()
    state = STState(clock=clock)
    if seeded:
        state.load(seed())
    if configure is not None:
        configure(state)
    injector = FaultInjector(config=faults or FaultConfig(seed=7))
    receiver = receiver or Receiver()
    app = create_app(state, injector, deliver=receiver, **app_options)
    app.state.auth.clock = clock
    app.state.webhooks.batch_window_s = 0.05
    app.state.webhooks.retry_delays_s = (0.0,)
    client = TestClient(app)
    client.__enter__()
    token = client_credentials(client)["access_token"]
    sim = Sim(app, state, injector, receiver, clock, client, {"Authorization": f"Bearer {token}"})

    def close() -> None:
        client.__exit__(None, None, None)

    return sim, close


def data(response: Any) -> Any:
    """``data`` of a 200 envelope (asserting the status)."""
    assert response.status_code == 200, response.text
    return response.json()["data"]


def register_webhook(
    sim: Sim, entity_types: list[int], *, changesets: bool = True, actions: list[str] | None = None
) -> dict[str, Any]:
    body = {
        "hookUrl": "https://receiver.example/hooks/st/secret",
        "enabled": True,
        "includeChangesets": changesets,
        "entityEvents": [
            {"entityType": t, "actions": actions or ["created", "updated", "deleted"]}
            for t in entity_types
        ],
    }
    result: dict[str, Any] = data(sim.post("/api/webhook", body))
    return result
