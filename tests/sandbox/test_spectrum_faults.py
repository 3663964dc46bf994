"""Spectrum simulator: fault injection, latency, request log, counters and reset (§1, §4, §9.4)."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from sandbox.faults import FaultConfig, FaultInjector
from sandbox.spectrum.app import create_app
from sandbox.spectrum.db import SpectrumDB
from tests.sandbox.test_spectrum_rest import basic, invoice
from tests.sandbox.test_spectrum_support import (  # noqa: F401 - fixtures
    AUTH,
    call,
    client_fixture,
    db_fixture,
    fault,
    get_rows,
    put_rows,
)

CUSTOMER = {
    "Company_Code": "ABC",
    "Customer_Code": "C00077",
    "Name": "Gamma",
    "Terms_Code": "N",
    "Sales_Tax_Code": "NC",
}


def injector(client: TestClient) -> FaultInjector:
    inj: FaultInjector = client.app.state.injector  # type: ignore[attr-defined]
    return inj


def script(client: TestClient, service: str, *outcomes: str) -> None:
    resp = client.post(f"/_sandbox/script/{service}", json=list(outcomes))
    assert resp.status_code == 200


def test_error_refuses_before_doing_anything(client: TestClient, db: SpectrumDB) -> None:
    script(client, "AddCustomer", "error")
    resp = call(client, "AddCustomer", CUSTOMER)
    assert resp.status_code == 500
    assert fault(resp) == ("SOAP-ENV:Server", "Error executing Web Service")
    assert db.count("CR_CUSTOMER_MASTER_MC", Customer_Code="C00077") == 0
    assert put_rows(call(client, "AddCustomer", CUSTOMER)) == []  # the script is used up


def test_ghost_commits_the_write_then_faults(client: TestClient, db: SpectrumDB) -> None:
    script(client, "AddCustomer", "ghost")
    resp = call(client, "AddCustomer", CUSTOMER)
    assert resp.status_code == 500
    assert fault(resp) == ("SOAP-ENV:Server", "Error executing Web Service")
    assert db.count("CR_CUSTOMER_MASTER_MC", Customer_Code="C00077") == 1
    # a retry now meets the duplicate, as against the real server
    assert put_rows(call(client, "AddCustomer", CUSTOMER)) == [
        ("I", "Customer_Code already exists", "Customer_Code")
    ]


def test_timeout_commits_holds_then_faults(client: TestClient, db: SpectrumDB) -> None:
    client.put("/_sandbox/faults", json={"timeout_hold_s": 0.3})
    script(client, "PreTimeCard", "timeout")
    values = {
        "Company_Code": "ABC",
        "Employee_Code": "E001",
        "Batch_Code": "B1",
        "Pay_Type": "R",
        "Work_Date": "03/02/2026",
        "Hours_Employee": "8",
    }
    started = time.perf_counter()
    resp = call(client, "PreTimeCard", values)
    assert time.perf_counter() - started >= 0.3
    assert resp.status_code == 500
    assert fault(resp)[0] == "SOAP-ENV:Server"
    assert db.count("PR_PRE_TIME_MC") == 1


def test_error_rate_and_service_filter(client: TestClient, db: SpectrumDB) -> None:
    client.put("/_sandbox/faults", json={"error_rate": 1.0, "services": ["AddJob"]})
    assert put_rows(call(client, "AddCustomer", CUSTOMER)) == []
    job = {
        "Company_Code": "ABC",
        "Job_Number": "T2001",
        "Taxable_Flag": "N",
        "Price_Method_Code": "T",
    }
    assert call(client, "AddJob", job).status_code == 500
    assert db.count("JC_JOB_MASTER_MC", Job_Number="T2001") == 0


def test_rest_faults(client: TestClient, db: SpectrumDB) -> None:
    script(client, "ARMultiLineInvoice", "error", "ghost")
    headers = basic("ABC", AUTH)
    resp = client.post("/customer/invoice", json={"arInvoices": [invoice()]}, headers=headers)
    assert resp.status_code == 500
    assert db.count("CR_INVOICE_HEADER_MC") == 0
    resp = client.post("/customer/invoice", json={"arInvoices": [invoice()]}, headers=headers)
    assert resp.status_code == 500
    assert db.count("CR_INVOICE_HEADER_MC") == 1  # ghost: it landed
    assert db.count("CR_INVOICE_DETAIL_MC") == 2


def test_truncated_envelope_ends_after_the_last_response(client: TestClient) -> None:
    client.put("/_sandbox/faults", json={"truncate_envelope": True})
    resp = call(client, "GetJob", {})
    assert resp.status_code == 200
    assert resp.text.endswith("</response>")
    assert "</SOAP-ENV:Envelope>" not in resp.text
    assert resp.text.count("<response>") == 3
    # Puts are not truncated
    assert put_rows(call(client, "AddCustomer", CUSTOMER)) == []


def test_row_cap_adds_a_w_row(client: TestClient) -> None:
    client.put("/_sandbox/faults", json={"row_cap": 2})
    rows = get_rows(call(client, "GetJob", {}), "GetJob")
    assert len(rows) == 3
    assert [r["Job_Number"] for r in rows[:2]] == ["T1001", "T1002"]
    assert rows[2]["Error_Code"] == "W"
    assert "exceeds maximum" in rows[2]["Error_Description"]
    assert rows[2]["Job_Number"] == ""
    # under the cap: no W row
    rows = get_rows(call(client, "GetJob", {"pCustomer_Code": "C00001"}), "GetJob")
    assert [r["Error_Code"] for r in rows] == [""]


def test_latency(client: TestClient) -> None:
    client.put("/_sandbox/faults", json={"latency_ms": 120})
    started = time.perf_counter()
    assert put_rows(call(client, "AddCustomer", CUSTOMER)) == []
    assert time.perf_counter() - started >= 0.12
    (rec,) = injector(client).requests("AddCustomer")
    assert rec.duration_ms >= 120


def test_request_log_and_counters(client: TestClient) -> None:
    since = time.time()
    call(client, "AddCustomer", CUSTOMER)
    call(client, "AddCustomer", CUSTOMER)
    script(client, "GetJob", "error")
    call(client, "GetJob", {})
    client.post("/ws/Nope", content="x")
    log = client.get("/_sandbox/requests", params={"since": since}).json()
    assert [(r["service"], r["status"], r["outcome"]) for r in log] == [
        ("AddCustomer", 200, "ok"),
        ("AddCustomer", 200, "ok"),
        ("GetJob", 500, "error"),
        ("Nope", 500, "client_fault"),
    ]
    assert "<Customer_Code>C00077</Customer_Code>" in log[0]["body"]
    assert log[0]["path"] == "/ws/AddCustomer"
    assert all(r["duration_ms"] >= 0 for r in log)
    only = client.get("/_sandbox/requests", params={"service": "GetJob"}).json()
    assert len(only) == 1
    counters = client.get("/_sandbox/counters").json()
    assert counters["calls"]["AddCustomer"] == 2
    assert counters["outcomes"]["GetJob:error"] == 1


def test_reset_restores_seed_state_and_knobs(client: TestClient, db: SpectrumDB) -> None:
    jobs_before = db.count("JC_JOB_MASTER_MC")
    client.put("/_sandbox/faults", json={"latency_ms": 5, "row_cap": 1})
    client.put("/_sandbox/spectrum/modes", json={"strict_lengths": True})
    client.delete(f"/_sandbox/spectrum/authorizations/{AUTH}/services/AddCustomer")
    call(client, "AddCustomer", CUSTOMER)
    client.post(f"/_sandbox/spectrum/authorizations/{AUTH}/services/AddCustomer")
    assert put_rows(call(client, "AddCustomer", CUSTOMER)) == []
    assert client.post("/_sandbox/reset").json() == {"status": "reset"}
    assert db.count("CR_CUSTOMER_MASTER_MC", Customer_Code="C00077") == 0
    assert db.count("JC_JOB_MASTER_MC") == jobs_before
    assert client.get("/_sandbox/faults").json()["row_cap"] is None
    assert client.get("/_sandbox/counters").json() == {"calls": {}, "outcomes": {}}
    state = client.get("/_sandbox/spectrum/state").json()
    assert state["strict_lengths"] is False
    auth = next(a for a in state["authorizations"] if a["authorization_id"] == AUTH)
    assert "AddCustomer" in auth["services"]
    assert put_rows(call(client, "AddCustomer", CUSTOMER)) == []


def test_injector_passed_in_is_used(db: SpectrumDB) -> None:
    inj = FaultInjector(FaultConfig(error_rate=1.0, seed=1))
    with TestClient(create_app(db, inj)) as c:
        assert call(c, "GetJob", {}).status_code == 500
    assert inj.calls["GetJob"] == 1


@pytest.mark.parametrize("outcome", ["ghost", "timeout"])
def test_reads_are_not_ghosted_by_dice(db: SpectrumDB, outcome: str) -> None:
    rates = {"ghost": {"ghost_write_rate": 1.0}, "timeout": {"timeout_rate": 1.0}}[outcome]
    inj = FaultInjector(FaultConfig(**rates))  # type: ignore[arg-type]
    with TestClient(create_app(db, inj)) as c:
        assert call(c, "GetJob", {}).status_code == 200


def test_a_simulator_bug_answers_a_server_fault_and_is_logged(
    client: TestClient, db: SpectrumDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sandbox.spectrum import puts

    def boom(*_args: object) -> list[tuple[str, str, str]]:
        raise RuntimeError("bug")

    monkeypatch.setitem(puts.PUT_HANDLERS, "AddCustomer", boom)
    resp = call(client, "AddCustomer", CUSTOMER)
    assert resp.status_code == 500
    assert fault(resp) == ("SOAP-ENV:Server", "Error executing Web Service")
    (rec,) = injector(client).requests("AddCustomer")
    assert (rec.status, rec.outcome) == (500, "server_error")
    assert db.count("CR_CUSTOMER_MASTER_MC", Customer_Code="C00077") == 0


def test_a_hold_takes_the_calls_that_reach_the_system_until_released() -> None:
    """The rebill killer's hold (bench/chaos.py): armed during an outage it takes nothing; the
    outage over, it turns every call into the held outcome ahead of the dice (a dice fault must
    not let a call slip by unheld), up to its limit or until released."""
    inj = FaultInjector(FaultConfig(outage=True))
    inj.hold("ARMultiLineInvoice", "timeout", limit=3)
    assert inj.decide("ARMultiLineInvoice", is_write=True) == "error"  # the outage comes first
    inj.configure(FaultConfig(error_rate=1.0))  # every roll of the dice a fault
    assert inj.decide("GetJob", is_write=False) == "error"  # other services are not held
    assert [inj.decide("ARMultiLineInvoice", is_write=True) for _ in range(2)] == ["timeout"] * 2
    inj.release("ARMultiLineInvoice")
    assert inj.decide("ARMultiLineInvoice", is_write=True) == "error"
    inj.configure(FaultConfig())
    inj.hold("ARMultiLineInvoice", "timeout", limit=2)
    assert [inj.decide("ARMultiLineInvoice", is_write=True) for _ in range(3)] == [
        "timeout",
        "timeout",
        "ok",  # the limit reached
    ]
    inj.script("ARMultiLineInvoice", ["error"])  # a script still comes before a hold
    inj.hold("ARMultiLineInvoice", "timeout", limit=1)
    assert inj.decide("ARMultiLineInvoice", is_write=True) == "error"
    inj.reset()
    assert inj.decide("ARMultiLineInvoice", is_write=True) == "ok"
