"""Contract tests: the real clients against the in-process simulators (sandbox/), no sockets.

The simulators and the clients read the same shared layouts but were written apart; these tests
check that they agree on the wire (auth, envelopes, pagination, error rows, faults).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from clients.errors import (
    AlreadyExists,
    AmbiguousWriteError,
    AuthorizationError,
    NotFound,
    PermanentError,
    TransientError,
)
from clients.http import CallRecord
from clients.servicetrade.assumptions import ENTITY_TYPES
from clients.servicetrade.client import ServiceTradeClient
from clients.spectrum.client import SpectrumClient
from clients.spectrum.infolink import InfoLinkReader
from clients.spectrum.models import ARInvoiceRequest, SpectrumRequest
from sandbox import credentials as cred
from tests.conftest import asgi_transport

ST_URL = "http://st.sandbox"
#: inside the sandbox's default AR processing window (2020-2030)
INVOICE_DATE = "03/02/2026"
SP_URL = "http://spectrum.sandbox"


@pytest.fixture
def calls() -> list[CallRecord]:
    return []


@pytest.fixture
def st(st_app: Any, calls: list[CallRecord]) -> Iterator[ServiceTradeClient]:
    with ServiceTradeClient(
        ST_URL,
        client_id=cred.ST_CLIENT_ID,
        client_secret=cred.ST_CLIENT_SECRET,
        transport=asgi_transport(st_app),
        retry_wait_s=0,
        on_call=calls.append,
    ) as client:
        yield client


@pytest.fixture
def sp(spectrum_app: Any, calls: list[CallRecord]) -> Iterator[SpectrumClient]:
    with SpectrumClient(
        SP_URL,
        authorization_id=cred.SPECTRUM_AUTHORIZATION_ID,
        company_code=cred.SPECTRUM_COMPANY,
        transport=asgi_transport(spectrum_app),
        retry_wait_s=0,
        on_call=calls.append,
    ) as client:
        yield client


@pytest.fixture
def infolink(spectrum_db: Any) -> Iterator[InfoLinkReader]:
    with InfoLinkReader(spectrum_db.url, cred.SPECTRUM_COMPANY) as reader:
        yield reader


# --- ServiceTrade ---------------------------------------------------------------------------------
def test_st_every_seeded_record_parses(st: ServiceTradeClient, world: Any) -> None:
    seeded = world.servicetrade
    assert {c.id for c in st.iter_companies()} == {c["id"] for c in seeded["company"]}
    assert len(list(st.iter_locations())) == sum(
        1
        for loc in seeded["location"]
        if next(c for c in seeded["company"] if c["id"] == loc["company"]["id"]).get("isCustomer")
    )
    jobs = list(st.iter_jobs())
    assert {j.id for j in jobs} == {j["id"] for j in seeded["job"] if j["status"] != "canceled"}
    assert {i.id for i in st.iter_invoices()} == {i["id"] for i in seeded["invoice"]}
    cards = [t for page in st.iter_timecard_pages(0, 2**31) for t in page]
    assert {t.id for t in cards} == {
        t["id"] for t in seeded["timecard"] if t["status"] == "approved"
    }
    assert {s.id for s in st.list_servicelines()} == {s["id"] for s in seeded["serviceline"]}
    assert {i.id for i in st.list_libitems()} == {i["id"] for i in seeded["libitem"]}
    job = st.get_job(jobs[0].id)
    assert job == jobs[0]


def test_st_pagination_follows_total_pages(st: ServiceTradeClient, world: Any) -> None:
    pages = list(st.iter_pages("company", "companies", {"limit": 1}))
    assert len(pages) == len(world.servicetrade["company"])
    assert all(len(p) == 1 for p in pages)


def test_st_legacy_session(st_app: Any, world: Any) -> None:
    with ServiceTradeClient(
        ST_URL,
        username=cred.ST_USERNAME,
        password=cred.ST_PASSWORD,
        transport=asgi_transport(st_app),
        retry_wait_s=0,
    ) as st:
        first = world.servicetrade["company"][0]
        assert st.get_company(first["id"]).name == first["name"]


def test_st_bad_credentials(st_app: Any) -> None:
    with (
        ServiceTradeClient(
            ST_URL,
            client_id=cred.ST_CLIENT_ID,
            client_secret="wrong-secret-value",
            transport=asgi_transport(st_app),
            retry_wait_s=0,
        ) as st,
        pytest.raises(AuthorizationError) as info,
    ):
        st.get_company(1001)
    assert "wrong-secret-value" not in str(info.value)


def test_st_writes_round_trip(st: ServiceTradeClient, world: Any) -> None:
    company = next(c for c in world.servicetrade["company"] if c.get("isCustomer"))
    st.set_external_id("company", company["id"], "spectrum", "CUST0001")
    assert st.get_external_ids("company", company["id"])["spectrum"] == "CUST0001"
    assert st.get_company(company["id"]).external_ids["spectrum"] == "CUST0001"

    invoice = next(i for i in world.servicetrade["invoice"] if i["status"] == "pending_accounting")
    comment = st.add_comment(ENTITY_TYPES["invoice"], invoice["id"], "GL 4000 is not set up")
    assert comment.content == "GL 4000 is not set up"
    assert comment.id in {c.id for c in st.list_comments(ENTITY_TYPES["invoice"], invoice["id"])}
    done = st.set_invoice_status(invoice["id"], "processed", "ST0001")
    assert (done.status, done.invoice_number) == ("processed", "ST0001")
    with pytest.raises(PermanentError, match="HTTP 400"):
        st.set_invoice_status(invoice["id"], "ok")  # processed → ok is refused (§8)

    job = world.servicetrade["job"][0]
    item = st.create_job_item(
        {
            "jobId": job["id"],
            "name": "Pipe",
            "quantity": 5,
            "cost": 6.5,
            "source": {"type": "refnumber", "value": "PO 26001/001"},
        }
    )
    assert item.source is not None and item.source.value == "PO 26001/001"
    assert st.update_job_item(item.id, {"quantity": 6}).quantity == 6
    assert [i.id for i in st.list_job_items(job["id"])] == [item.id]
    st.delete_job_item(item.id)
    assert st.list_job_items(job["id"]) == []
    with pytest.raises(NotFound):
        st.delete_job_item(item.id)


def test_st_webhooks(st: ServiceTradeClient) -> None:
    hook = f"https://ingest.example/hooks/st/{cred.WEBHOOK_SECRET}"
    created = st.register_webhook(hook, {ENTITY_TYPES["job"]: ["created", "updated"]})
    assert created["hookUrl"] == hook
    assert [w["id"] for w in st.list_webhooks()] == [created["id"]]
    st.delete_webhook(created["id"])
    assert st.list_webhooks() == []


def test_st_not_found(st: ServiceTradeClient) -> None:
    with pytest.raises(NotFound):
        st.get_job(999_999_999)


def test_st_faults_read_retried_write_ambiguous(
    st: ServiceTradeClient, st_app: Any, world: Any
) -> None:
    injector = st_app.state.injector
    company = world.servicetrade["company"][0]
    injector.script("company", ["error", "error"])
    assert st.get_company(company["id"]).id == company["id"]  # third attempt answers
    injector.script("company", ["rate_limit"] * 3)
    with pytest.raises(TransientError) as info:
        st.get_company(company["id"])
    assert info.value.retry_after is not None
    injector.script("externalid", ["ghost"])
    with pytest.raises(AmbiguousWriteError):
        st.set_external_id("company", company["id"], "spectrum", "GHOST01")
    # the ghost write landed although the client could not know
    assert st.get_external_ids("company", company["id"])["spectrum"] == "GHOST01"


# --- Spectrum -----------------------------------------------------------------------------------------
def add_customer(code: str, **extra: str) -> SpectrumRequest:
    values = {
        "Company_Code": cred.SPECTRUM_COMPANY,
        "Customer_Code": code,
        "Name": "O'Brien & Sons",
        "Terms_Code": "N",
        "Sales_Tax_Code": "NC",
        "Address_1": "1 Main St",
        "City": "Durham",
        "State": "NC",
        "Phone": "9195550100",
    }
    values.update(extra)
    return SpectrumRequest(service="AddCustomer", values=values)


def test_sp_put_lands_in_infolink_and_duplicate_is_already_exists(
    sp: SpectrumClient, infolink: InfoLinkReader, calls: list[CallRecord]
) -> None:
    assert sp.put(add_customer("OBRIEN01")).generated == {}
    row = infolink.find_customer("OBRIEN01")
    assert row is not None
    assert row["Name"] == "O'Brien & Sons"  # escaped on the wire, stored as sent
    with pytest.raises(AlreadyExists) as info:
        sp.put(add_customer("OBRIEN01"))
    assert info.value.field == "Customer_Code"
    assert [c.outcome for c in calls] == ["ok", "error"]


def test_sp_put_validation_rows(sp: SpectrumClient) -> None:
    with pytest.raises(PermanentError) as info:
        sp.put(add_customer("BADTERMS", Terms_Code="Z"))
    assert not isinstance(info.value, AlreadyExists | AuthorizationError)
    assert any(r.column == "Terms_Code" for r in info.value.rows)


def test_sp_inactive_authorization(spectrum_app: Any) -> None:
    with SpectrumClient(
        SP_URL,
        authorization_id=cred.SPECTRUM_INACTIVE_AUTHORIZATION_ID,
        company_code=cred.SPECTRUM_COMPANY,
        transport=asgi_transport(spectrum_app),
        retry_wait_s=0,
    ) as sp:
        with pytest.raises(AuthorizationError) as info:
            sp.put(add_customer("NOAUTH01"))
        assert cred.SPECTRUM_INACTIVE_AUTHORIZATION_ID not in str(info.value)
        with pytest.raises(AuthorizationError):
            sp.get("GetJob")


def test_sp_work_order_number_generated(sp: SpectrumClient, infolink: InfoLinkReader) -> None:
    sp.put(add_customer("WOCUST01"))
    site = SpectrumRequest(
        service="AddWOSiteAddress",
        values={
            "Company_Code": cred.SPECTRUM_COMPANY,
            "Site_ID": "SITE0001",
            "Site_Name": "Bistro #12",
            "Site_Customer_Code": "WOCUST01",
        },
    )
    sp.put(site)
    wo = SpectrumRequest(
        service="WorkOrderHeader",
        values={
            "WO_Reference_Code": "S",
            "WO_Job_Number": "SITE0001",
            "WO_Job_Division": "SVC",
            "Bill_Customer_Code": "WOCUST01",
            "Summary_Description": "Annual inspection",
        },
    )
    result = sp.put(wo)
    (number,) = result.generated.values()
    found = infolink.find_work_order(number)
    assert found is not None and found["Summary_Description"] == "Annual inspection"


def test_sp_gets(sp: SpectrumClient, world: Any) -> None:
    jobs = sp.get_jobs()
    seeded = {
        r["Job_Number"].strip()
        for r in world.spectrum["JC_JOB_MASTER_MC"]
        if r["Company_Code"] == cred.SPECTRUM_COMPANY and (r.get("Status_Code") or "A") in "AI"
    }
    assert {r["Job_Number"] for r in jobs.rows} == seeded
    assert jobs.truncated is False
    phases = sp.get_phases("TEMPLATE")
    assert phases.rows and all(r["Job_Number"] == "TEMPLATE" for r in phases.rows)
    assert {r["Employee_Code"] for r in sp.get_employees().rows}


def test_sp_get_retried_through_faults_and_capped(sp: SpectrumClient, spectrum_app: Any) -> None:
    injector = spectrum_app.state.injector
    injector.script("GetJob", ["error", "error"])
    assert sp.get("GetJob").rows
    injector.script("GetJob", ["error"] * 3)
    with pytest.raises(TransientError):
        sp.get("GetJob")
    injector.configure(injector.config.model_copy(update={"row_cap": 1}))
    capped = sp.get("GetPhase", {"pJob_Number": "TEMPLATE"})
    assert capped.truncated is True
    assert len(capped.rows) == 1
    injector.configure(
        injector.config.model_copy(update={"row_cap": None, "truncate_envelope": True})
    )
    cut = sp.get("GetPhase", {"pJob_Number": "TEMPLATE"})
    assert cut.truncated is True
    assert len(cut.rows) > 1


def test_sp_put_ghost_write_is_ambiguous_and_landed(
    sp: SpectrumClient, spectrum_app: Any, infolink: InfoLinkReader
) -> None:
    spectrum_app.state.injector.script("AddCustomer", ["ghost"])
    with pytest.raises(AmbiguousWriteError):
        sp.put(add_customer("GHOST001"))
    assert infolink.find_customer("GHOST001") is not None
    with pytest.raises(AlreadyExists):
        sp.put(add_customer("GHOST001"))


def test_sp_guid_time_out_renews_and_resends(
    sp: SpectrumClient, spectrum_app: Any, calls: list[CallRecord]
) -> None:
    admin = spectrum_app.state.admin
    sp.put(add_customer("GUID0001"))
    first_guid = sp.batch_guid
    real_clock = admin.clock
    admin.clock = lambda: real_clock() + timedelta(hours=25)
    try:
        sp.put(add_customer("GUID0002"))
    finally:
        admin.clock = real_clock
    assert sp.batch_guid != first_guid
    assert [c.outcome for c in calls] == ["ok", "transient", "ok"]


def test_sp_rest_invoices(sp: SpectrumClient, infolink: InfoLinkReader) -> None:
    sp.put(add_customer("INVCUST1"))

    def invoice(number: str, gl: str = "4000") -> ARInvoiceRequest:
        return ARInvoiceRequest(
            header={
                "Company_Code": cred.SPECTRUM_COMPANY,
                "GL_Date": INVOICE_DATE,
                "Batch_Code": "B1",
                "Customer_Code": "INVCUST1",
                "Invoice_Or_Transaction": number,
                "Transaction_Type": "I",
                "Invoice_Date": INVOICE_DATE,
                "Sales_Tax_Code": "NC",
                "Sales_Tax_Amount": "7.00",
            },
            details=[
                {
                    "Quantity": "1",
                    "Detail_Description": "Inspection",
                    "Line_Extension": "100.00",
                    "GL_Account": gl,
                    "Income_Cost_Center": "100",
                }
            ],
        )

    ok, bad = sp.add_ar_invoices([invoice("ST9001"), invoice("ST9002", gl="9999")])
    assert ok.ok, ok.error
    assert not bad.ok and type(bad.error) is PermanentError
    stored = infolink.find_ar_invoice("ST9001")
    assert stored is not None and len(stored["lines"]) == 1
    (dup,) = sp.add_ar_invoices([invoice("ST9001")])
    assert isinstance(dup.error, AlreadyExists)


def test_infolink_reads_seeded_purchase_orders(infolink: InfoLinkReader, world: Any) -> None:
    lines = [line for page in infolink.iter_po_lines(None, page_size=3) for line in page]
    seeded = [
        r
        for r in world.spectrum["PO_PURCHASE_ORDER_DETAIL_MC"]
        if r["Company_Code"] == cred.SPECTRUM_COMPANY
    ]
    assert len(lines) == len(seeded)
    assert all(line.po_number == line.po_number.strip() for line in lines)
    assert {line.po_number for line in lines} >= {"26001"}
