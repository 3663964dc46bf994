"""ServiceTrade simulator: fault knobs, latency, request log, counters and reset (F18, sandbox/faults)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from sandbox.faults import FaultConfig
from tests.sandbox.test_servicetrade_support import (
    CUSTOMER,
    INVOICE,
    JOB,
    LOC,
    VENDOR,
    Sim,
    client_credentials,
    data,
    make_sim,
    register_webhook,
)

NEW_JOB = {"locationId": LOC, "vendorId": VENDOR, "type": "repair", "description": "faulted"}


@pytest.fixture
def sim() -> Iterator[Sim]:
    s, close = make_sim()
    yield s
    close()


def _jobs_described(sim: Sim, text: str) -> int:
    return sum(1 for j in sim.state.all("job") if j.get("description") == text)


def test_error_is_503_envelope_and_nothing_is_written(sim: Sim) -> None:
    sim.injector.script("job", ["error"])
    response = sim.post("/api/job", NEW_JOB)
    assert response.status_code == 503
    assert response.json() == {
        "messages": {"error": [response.json()["messages"]["error"][0]]},
        "data": None,
    }
    assert _jobs_described(sim, "faulted") == 0
    # the script is used up: the next call goes through
    assert sim.post("/api/job", NEW_JOB).status_code == 200
    assert _jobs_described(sim, "faulted") == 1


def test_error_rate_via_admin_route(sim: Sim) -> None:
    put = sim.client.put("/_sandbox/faults", json={"error_rate": 1.0})
    assert put.status_code == 200
    assert sim.get(f"/api/job/{JOB}").status_code == 503
    # oauth and admin routes are never faulted
    assert client_credentials(sim.client)["access_token"]
    assert sim.client.get("/_sandbox/counters").status_code == 200


def test_services_knob_limits_faults_to_named_resources(sim: Sim) -> None:
    sim.injector.configure(FaultConfig(error_rate=1.0, services=["invoice"]))
    assert sim.get(f"/api/job/{JOB}").status_code == 200
    assert sim.get(f"/api/invoice/{INVOICE}").status_code == 503


def test_rate_limit_is_429_with_retry_after(sim: Sim) -> None:
    sim.injector.configure(FaultConfig(retry_after_s=7))
    sim.injector.script("company", ["rate_limit"])
    response = sim.get("/api/company")
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert response.json()["data"] is None


def test_ghost_write_commits_then_answers_503(sim: Sim) -> None:
    sim.injector.script("job", ["ghost"])
    response = sim.post("/api/job", NEW_JOB)
    assert response.status_code == 503
    assert _jobs_described(sim, "faulted") == 1
    sim.injector.script("invoice", ["ghost"])
    ghost_put = sim.put(f"/api/invoice/{INVOICE}", {"status": "processed", "invoiceNumber": "A1"})
    assert ghost_put.status_code == 503
    assert data(sim.get(f"/api/invoice/{INVOICE}"))["invoiceNumber"] == "A1"


def test_ghost_rate_applies_to_writes_only(sim: Sim) -> None:
    sim.injector.configure(FaultConfig(ghost_write_rate=1.0))
    assert sim.get(f"/api/job/{JOB}").status_code == 200
    assert sim.post("/api/job", NEW_JOB).status_code == 503
    assert _jobs_described(sim, "faulted") == 1


def test_timeout_commits_then_holds_the_answer(sim: Sim) -> None:
    sim.injector.configure(FaultConfig(timeout_hold_s=0.3))
    sim.injector.script("job", ["timeout"])
    started = time.monotonic()
    response = sim.post("/api/job", NEW_JOB)
    elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert elapsed >= 0.3
    assert _jobs_described(sim, "faulted") == 1


def test_latency_is_applied(sim: Sim) -> None:
    sim.injector.configure(FaultConfig(latency_ms=150))
    started = time.monotonic()
    assert sim.get(f"/api/job/{JOB}").status_code == 200
    assert time.monotonic() - started >= 0.15
    sim.injector.configure(FaultConfig())
    started = time.monotonic()
    assert sim.get(f"/api/job/{JOB}").status_code == 200
    assert time.monotonic() - started < 0.15


def test_request_log_and_counters(sim: Sim) -> None:
    since = time.time()
    data(sim.post("/api/job", NEW_JOB))
    assert sim.get(f"/api/job/{JOB}").status_code == 200
    sim.injector.script("invoice", ["error"])
    assert sim.get("/api/invoice").status_code == 503
    log = sim.client.get("/_sandbox/requests", params={"since": since}).json()
    summary = [(r["service"], r["method"], r["status"], r["outcome"]) for r in log]
    assert summary == [
        ("job", "POST", 200, "ok"),
        ("job", "GET", 200, "ok"),
        ("invoice", "GET", 503, "error"),
    ]
    assert '"description": "faulted"' in log[0]["body"] or '"faulted"' in log[0]["body"]
    assert log[1]["path"] == f"/api/job/{JOB}"
    assert all(r["duration_ms"] >= 0 for r in log)
    counters = sim.client.get("/_sandbox/counters").json()
    assert counters["calls"]["job"] == 2
    assert counters["outcomes"]["invoice:error"] == 1


def test_oauth_bodies_are_redacted_in_the_log(sim: Sim) -> None:
    client_credentials(sim.client)
    oauth = sim.injector.requests("oauth2")
    assert oauth and all(r.body == "<redacted>" for r in oauth)


def test_unauthenticated_calls_are_logged_with_401(sim: Sim) -> None:
    sim.client.get(f"/api/job/{JOB}")
    last = sim.injector.requests("job")[-1]
    assert last.status == 401


def test_reset_returns_to_the_seed(sim: Sim) -> None:
    hook = register_webhook(sim, [3])
    created = data(sim.post("/api/company", {"name": "Temporary"}))
    data(sim.put(f"/api/company/{CUSTOMER}", {"name": "Renamed"}))
    sim.injector.configure(FaultConfig(latency_ms=5))
    sim.flush()
    response = sim.client.post("/_sandbox/reset")
    assert response.status_code == 200
    assert sim.state.get("company", created["id"]) is None
    assert sim.state.get("company", CUSTOMER)["name"] == "Burger Bistro Inc"  # type: ignore[index]
    assert sim.state.all("webhook") == []
    assert sim.injector.config.latency_ms == 0
    assert sim.client.get("/_sandbox/counters").json()["calls"] == {}
    assert sim.app.state.webhooks.counters()["sent"] == 0
    # tokens survive a reset; ids restart right above the seed (the webhook had the first one)
    again = data(sim.post("/api/company", {"name": "After reset"}))
    assert again["id"] == hook["id"]


def test_state_snapshot_routes(sim: Sim) -> None:
    companies = sim.client.get("/_sandbox/state/company").json()
    assert CUSTOMER in {c["id"] for c in companies}
    one = sim.client.get(f"/_sandbox/state/job/{JOB}")
    assert one.json()["number"] == 52311
    assert sim.client.get("/_sandbox/state/job/1").status_code == 404
    assert sim.client.get("/_sandbox/state/nothing").status_code == 404
