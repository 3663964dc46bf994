"""sync_customer / sync_site against the in-process sandbox with a real SQLite ledger (F1, F2, F13)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from clients.errors import RecordBusy, TransientError
from clients.spectrum import infolink_schema as t
from tasks.customer import sync_customer
from tasks.site import sync_site
from worker.ledger import RecordKey, Status


def customers_of(world: Any) -> list[dict[str, Any]]:
    return [c for c in world.servicetrade["company"] if not c.get("isVendor")]


def locations_of(world: Any, company_id: int) -> list[dict[str, Any]]:
    return [
        loc
        for loc in world.servicetrade["location"]
        if (loc.get("company") or {}).get("id") == company_id
    ]


def calls(app: Any, service: str) -> int:
    return int(app.state.injector.calls.get(service, 0))


def test_company_becomes_customer_once_with_external_id(
    ctx: Any, world: Any, spectrum_app: Any, spectrum_db: Any, st_state: Any
) -> None:
    company = customers_of(world)[0]
    out = sync_customer(ctx, company["id"], "main")
    assert out.result == "synced" and out.spectrum_key == "C00001"
    rows = spectrum_db.rows(t.customers.name, Customer_Code="C00001")
    assert len(rows) == 1 and rows[0]["Company_Code"] == "ABC"
    assert st_state.get("company", company["id"])["externalIds"]["spectrum"] == "C00001"
    rec = ctx.ledger.get(RecordKey("main", "customer", str(company["id"])))
    assert rec.status is Status.DONE and rec.payload_digest
    # a later event is a no-op: nothing more is sent
    again = sync_customer(ctx, company["id"], "main")
    assert again.result == "unchanged"
    assert calls(spectrum_app, "AddCustomer") == 1
    services = [h.service for h in ctx.ledger.history(rec.key)]
    assert "AddCustomer" in services and "noop" in services


def test_ghost_write_is_adopted_not_duplicated(
    ctx: Any, world: Any, spectrum_app: Any, spectrum_db: Any
) -> None:
    company = customers_of(world)[0]
    spectrum_app.state.injector.script("AddCustomer", ["ghost"])
    with pytest.raises(TransientError):
        sync_customer(ctx, company["id"], "main")
    rec = ctx.ledger.get(RecordKey("main", "customer", str(company["id"])))
    assert rec.status is Status.PENDING and rec.spectrum_key == "C00001"
    assert spectrum_db.count(t.customers.name, Customer_Code="C00001") == 1  # it did land
    out = sync_customer(ctx, company["id"], "main")
    assert out.result == "adopted" and out.spectrum_key == "C00001"
    assert spectrum_db.count(t.customers.name, Customer_Code="C00001") == 1
    assert calls(spectrum_app, "AddCustomer") == 1  # looked up, not sent again


def test_spectrum_faulting_for_a_while_then_synced(
    ctx: Any, world: Any, spectrum_app: Any, spectrum_db: Any
) -> None:
    company = customers_of(world)[1]
    spectrum_app.state.injector.script("AddCustomer", ["error", "error"])
    for _ in range(2):
        with pytest.raises(TransientError):
            sync_customer(ctx, company["id"], "main")
    assert sync_customer(ctx, company["id"], "main").ok
    assert (
        spectrum_db.count(t.customers.name)
        - spectrum_db.count(t.customers.name, Customer_Code="TEMPLATE")
        >= 1
    )
    rec = ctx.ledger.get(RecordKey("main", "customer", str(company["id"])))
    assert rec.attempts == 3 and rec.status is Status.DONE


def test_permanent_validation_error_is_failed_with_spectrum_message(
    ctx: Any, world: Any, spectrum_db: Any
) -> None:
    with spectrum_db.engine.begin() as c:
        c.execute(t.terms.delete())  # Spectrum no longer has terms code "N"
    company = customers_of(world)[0]
    out = sync_customer(ctx, company["id"], "main")
    assert out.result == "failed"
    rec = ctx.ledger.get(RecordKey("main", "customer", str(company["id"])))
    assert rec.status is Status.FAILED and "Terms_Code" in (rec.last_error or "")
    assert spectrum_db.count(t.customers.name, Customer_Code=rec.spectrum_key) == 0


def test_code_taken_in_spectrum_by_someone_else_is_skipped(
    ctx: Any, world: Any, spectrum_db: Any
) -> None:
    with spectrum_db.engine.begin() as c:
        c.execute(
            t.customers.insert().values(
                Company_Code="ABC", Customer_Code="C00001", Name="Somebody Else", Status="A"
            )
        )
    out = sync_customer(ctx, customers_of(world)[0]["id"], "main")
    assert out.spectrum_key == "C00002"
    assert spectrum_db.rows(t.customers.name, Customer_Code="C00001")[0]["Name"] == "Somebody Else"


def test_existing_external_id_mapping_is_adopted(
    ctx: Any, world: Any, st_state: Any, spectrum_db: Any, spectrum_app: Any
) -> None:
    company = customers_of(world)[0]
    with spectrum_db.engine.begin() as c:
        c.execute(
            t.customers.insert().values(
                Company_Code="ABC", Customer_Code="OLD42", Name=company["name"][:30], Status="A"
            )
        )
    st_state.update("company", company["id"], {"externalIds": {"spectrum": "OLD42"}})
    out = sync_customer(ctx, company["id"], "main")
    assert (out.result, out.spectrum_key) == ("adopted", "OLD42")
    assert calls(spectrum_app, "AddCustomer") == 0


def test_site_syncs_its_customer_first(
    ctx: Any, world: Any, st_state: Any, spectrum_db: Any
) -> None:
    company = customers_of(world)[0]
    loc = locations_of(world, company["id"])[0]
    out = sync_site(ctx, loc["id"], "main")
    assert out.result == "synced" and out.spectrum_key == "S00001"
    site = spectrum_db.rows(t.sites.name, Site_ID="S00001")[0]
    cust = ctx.ledger.get(RecordKey("main", "customer", str(company["id"])))
    assert cust.status is Status.DONE and site["Site_Customer_Code"] == cust.spectrum_key
    assert st_state.get("location", loc["id"])["externalIds"]["spectrum"] == "S00001"


def test_two_locations_of_one_new_company_one_customer(
    ctx: Any, world: Any, spectrum_db: Any
) -> None:
    company = next(c for c in customers_of(world) if len(locations_of(world, c["id"])) >= 2)
    a, b = locations_of(world, company["id"])[:2]
    assert sync_site(ctx, a["id"], "main").ok
    assert sync_site(ctx, b["id"], "main").ok
    assert spectrum_db.count(t.customers.name, Name=company["name"][:30]) <= 1
    codes = {r["Site_Customer_Code"] for r in spectrum_db.rows(t.sites.name)}
    assert len(codes) == 1


def test_concurrent_syncs_of_one_company_send_once(ctx: Any, world: Any, spectrum_app: Any) -> None:
    company = customers_of(world)[0]
    spectrum_app.state.injector.configure(
        spectrum_app.state.injector.config.model_copy(update={"latency_ms": 300})
    )
    results: list[str] = []
    barrier = threading.Barrier(2)

    def go() -> None:
        barrier.wait()
        try:
            results.append(sync_customer(ctx, company["id"], "main").result)
        except RecordBusy:
            results.append("busy")

    threads = [threading.Thread(target=go) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(results) in (["busy", "synced"], ["synced", "unchanged"])
    assert calls(spectrum_app, "AddCustomer") == 1


def test_vendor_company_is_skipped(ctx: Any, world: Any) -> None:
    vendor = next(c for c in world.servicetrade["company"] if c.get("isVendor"))
    out = sync_customer(ctx, vendor["id"], "main")
    assert out.result == "skipped"
    rec = ctx.ledger.get(RecordKey("main", "customer", str(vendor["id"])))
    assert rec.status is Status.SKIPPED and "not a customer" in (rec.last_error or "")
