"""The ledger on SQLite and PostgreSQL: claims, leases, crash detection, codes, audit, watermarks."""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
from datetime import timedelta

import pytest
import sqlalchemy.exc

from clients.errors import PermanentError
from worker.ledger import Ledger, RecordKey, Status, utcnow

KEY = RecordKey("main", "customer", "42")


def test_claim_is_exclusive_until_released(led: Ledger) -> None:
    first = led.claim(KEY, lease_s=30, owner="hostA:1")
    second = led.claim(KEY, lease_s=30, owner="hostB:2")
    assert first.held and not second.held
    assert second.record.status is Status.IN_FLIGHT
    led.mark(KEY, Status.PENDING, error_kind="transient", reason="503")
    third = led.claim(KEY, lease_s=30, owner="hostB:2")
    assert third.held
    assert third.record.attempts == 2
    assert third.record.crashes == 0


def test_done_is_not_reclaimed_unless_replay(led: Ledger) -> None:
    assert led.claim(KEY, lease_s=30).held
    led.mark_done(KEY, spectrum_key="C00001")
    again = led.claim(KEY, lease_s=30)
    assert not again.held and again.record.status is Status.DONE
    assert again.record.spectrum_key == "C00001"
    assert led.claim(KEY, lease_s=30, reclaim_done=True).held


def test_expired_lease_is_taken_over_and_counted(led: Ledger) -> None:
    assert led.claim(KEY, lease_s=0.01, owner="otherhost:1").held
    import time

    time.sleep(0.05)
    take = led.claim(KEY, lease_s=30, owner="hostB:2")
    assert take.held and take.recovered
    assert take.record.crashes == 1


def test_dead_local_holder_is_detected_before_the_lease_ends(led: Ledger) -> None:
    import socket

    proc = mp.get_context("spawn").Process(target=os.getpid)
    proc.start()
    proc.join()
    dead_owner = f"{socket.gethostname()}:{proc.pid}"
    assert led.claim(KEY, lease_s=3600, owner=dead_owner).held
    take = led.claim(KEY, lease_s=30)
    assert take.held and take.recovered and take.record.crashes == 1


def test_live_local_holder_keeps_its_claim(led: Ledger) -> None:
    import socket

    assert led.claim(KEY, lease_s=3600, owner=f"{socket.gethostname()}:{os.getpid()}").held
    assert not led.claim(KEY, lease_s=30, owner="hostB:9").held


def test_concurrent_claims_one_winner(led: Ledger) -> None:
    led.ensure(KEY)
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def go(i: int) -> None:
        barrier.wait()
        results.append(led.claim(KEY, lease_s=30, owner=f"remote{i}:1").held)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1


def test_codes_never_repeat_across_threads(led: Ledger) -> None:
    got: list[int] = []
    lock = threading.Lock()

    def take() -> None:
        for _ in range(25):
            n = led.next_code_value("main", "customer", start=1, end=10_000)
            with lock:
                got.append(n)

    threads = [threading.Thread(target=take) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == list(range(1, 101))
    # per connection and kind
    assert led.next_code_value("other", "customer", start=1, end=10) == 1
    assert led.next_code_value("main", "site", start=500, end=600) == 500


def test_code_range_exhaustion_is_a_clear_error(led: Ledger) -> None:
    assert led.next_code_value("main", "site", start=1, end=1) == 1
    with pytest.raises(PermanentError, match="range is used up"):
        led.next_code_value("main", "site", start=1, end=1)


def test_progress_state_and_bulk_reads(led: Ledger) -> None:
    led.claim(KEY, lease_s=30)
    led.update_progress(KEY, step="spectrum", spectrum_key="C7", state={"steps": ["spectrum"]})
    rec = led.get(KEY)
    assert rec is not None and rec.step == "spectrum" and rec.state == {"steps": ["spectrum"]}
    for i in range(3):
        led.ensure(RecordKey("main", "timecard_entry", f"1:{i}"))
    many = led.get_many("main", "timecard_entry", ["1:0", "1:2", "9:9"])
    assert set(many) == {"1:0", "1:2"}
    assert led.find_by_spectrum_key("main", "customer", "C7") is not None


def test_audit_history_and_counts(led: Ledger) -> None:
    led.audit(
        system="spectrum",
        service="AddCustomer",
        outcome="ok",
        key=KEY,
        request_digest="d" * 64,
        duration_ms=3.5,
    )
    led.audit(system="servicetrade", service="externalid", outcome="ok", key=KEY)
    hist = led.history(KEY)
    assert [h.service for h in hist] == ["AddCustomer", "externalid"]
    assert led.audit_count(service="AddCustomer") == 1


def test_audit_rows_keep_every_field(led: Ledger) -> None:
    before = utcnow()
    led.audit(
        system="servicetrade",
        service="invoice",
        outcome="error",
        key=KEY,
        method="PUT",
        request_digest="e" * 64,
        status_code=503,
        duration_ms=12.25,
        spectrum_key="INV-1",
        detail="x" * 2500,
    )
    led.audit(system="stsync", service="route", outcome="noop")  # no key, no optional fields
    (h,) = led.history(KEY)
    assert before <= h.at <= utcnow() and h.at.tzinfo is not None
    assert (h.system, h.service, h.method, h.outcome) == ("servicetrade", "invoice", "PUT", "error")
    assert (h.status_code, h.duration_ms, h.spectrum_key) == (503, 12.25, "INV-1")
    assert h.request_digest == "e" * 64 and h.detail == "x" * 2000
    assert led.audit_count(service="route", outcome="noop") == 1


def test_an_audit_the_database_refuses_raises_what_sqlalchemy_raises(ledger_url: str) -> None:
    led = Ledger(ledger_url)  # not migrated: no audit table
    try:
        with pytest.raises(sqlalchemy.exc.DBAPIError) as through_sqlalchemy:
            led.audit_count()
        with pytest.raises(sqlalchemy.exc.DBAPIError) as audit:
            led.audit(system="stsync", service="route", outcome="noop", key=KEY)
        # the same class, so the pipeline classifies it as before (worker/infra.py)
        assert type(audit.value) is type(through_sqlalchemy.value)
        led.migrate()  # the pooled connection was given back usable
        led.audit(system="stsync", service="route", outcome="noop", key=KEY)
        assert led.audit_count(source_id=KEY.source_id) == 1
    finally:
        led.dispose()


def test_watermarks_and_alerts(led: Ledger) -> None:
    assert led.get_watermark("main", "sweep") is None
    led.set_watermark("main", "sweep", "100")
    led.set_watermark("main", "sweep", "200")
    assert led.get_watermark("main", "sweep") == "200"
    assert led.record_alert(KEY, kind="prerequisite", problem_key="p1", message="x")
    assert not led.record_alert(KEY, kind="prerequisite", problem_key="p1", message="x")
    assert len(led.unsent_alerts()) == 1
    led.mark_alerts_sent([a["id"] for a in led.unsent_alerts()])
    assert led.unsent_alerts() == []


def test_stuck_lists_expired_in_flight(led: Ledger) -> None:
    led.claim(KEY, lease_s=0.001, owner="h:1")
    import time

    time.sleep(0.01)
    assert [r.key for r in led.stuck(older_than=timedelta(0))] == [KEY]
    assert utcnow().tzinfo is not None
