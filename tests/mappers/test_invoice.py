"""ServiceTrade invoice -> Spectrum AR invoice / credit memo mapper (F5, F6, F14): tables and
properties."""

from __future__ import annotations

import ast
from collections.abc import Sequence
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clients.errors import (
    ErrorRow,
    MappingError,
    PermanentError,
    PrerequisiteMissing,
    RecordSkipped,
    SyncError,
)
from clients.servicetrade.models import Invoice, InvoiceItem, Ref, User
from clients.spectrum.models import ARInvoiceRequest
from mappers.invoice import (
    DocumentNumbers,
    ar_request_from_infolink,
    batch_code,
    check_processing_window,
    document_numbers,
    document_total,
    failure_comment,
    invoice_date,
    invoice_number,
    item_cost_center,
    line_extension,
    line_gl_account,
    sales_tax_code,
    salesperson_code_for,
    signed_total,
    split_items,
    st_invoice_to_ar_invoices,
)
from mappers.rules import ConnectionRules, CostCenterRules, DateWindow, TaxRules

TZ = "America/New_York"
# 2026-01-15 12:00 New York
TX_DATE = int(datetime(2026, 1, 15, 12, 0, tzinfo=ZoneInfo(TZ)).timestamp())

RULES = ConnectionRules.model_validate(
    {
        "company_code": "ABC",
        "tax": {
            "default_sales_tax_code": "EXEMPT",
            "sales_tax_by_state": {"NC": "NCST", "SC": "SCST"},
            "sales_tax_by_rate": {"7.0": "NC", "6": "SC", "0": "NOTAX", "10": "TEN"},
        },
        "cost_centers": {
            "codes": ["100", "200", "300"],
            "by_service_line": {"SP": "100", "FA": "200"},
            "default": "300",
            "gl_account": {"100": "4000", "200": "4100"},
        },
        "invoices": {
            "gl_routing": "cost_center",
            "job_type_gl": {"inspection": "4300", "repair": "4400"},
            "number_prefix": "ST",
            "credit_memo_prefix": "SC",
            "void_prefix": "SV",
            "batch_code_format": "ST%y%m%d",
            "require_salesperson": True,
            "salesperson_map": {"77": "JD"},
        },
    }
)


def item(id_: int, qty: str, price: str, **kw: Any) -> InvoiceItem:
    data: dict[str, Any] = {"id": id_, "quantity": qty, "price": price}
    data["subtotal"] = kw.pop("subtotal", str(Decimal(qty) * Decimal(price)))
    data.update(kw)
    return InvoiceItem.model_validate(data)


def _st_ext(i: InvoiceItem) -> Decimal:
    """ServiceTrade's line amount (written independently of the mapper)."""
    raw = i.subtotal if i.subtotal is not None else i.quantity * i.price
    return raw.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def _st_tax(i: InvoiceItem) -> Decimal:
    raw = i.tax_amount if i.tax_amount is not None else _st_ext(i) * (i.tax_rate or 0) / 100
    return raw.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def make_invoice(items: list[InvoiceItem], **kw: Any) -> Invoice:
    """An invoice whose header totals are the sums of its items (as ServiceTrade computes them)."""
    subtotal = sum((_st_ext(i) for i in items), Decimal(0))
    tax = sum((_st_tax(i) for i in items), Decimal(0))
    data: dict[str, Any] = {
        "id": 4401,
        "status": "pending_accounting",
        "type": "invoice",
        "invoiceNumber": "4401",
        "transactionDate": TX_DATE,
        "customerPo": "PO-7781",
        "subtotal": str(subtotal),
        "taxAmount": str(tax),
        "totalPrice": str(subtotal + tax),
        "items": [i.model_dump(by_alias=True) for i in items],
    }
    data.update(kw)
    return Invoice.model_validate(data)


def cc_by_service_line(it: InvoiceItem) -> str:
    return item_cost_center(it, job_cost_center="200", rules=RULES.cost_centers)


def map_invoice(inv: Invoice, **kw: Any) -> list[ARInvoiceRequest]:
    args: dict[str, Any] = {
        "customer_code": "C00001",
        "job_number": "T52311",
        "job_type": "inspection",
        "cost_center_for_item": cc_by_service_line,
        "location_state": "NC",
        "salesperson_code": "JD",
        "rules": RULES,
        "tz": TZ,
        "connection": "main",
    }
    args.update(kw)
    return st_invoice_to_ar_invoices(inv, **args)


SP = {"id": 5, "abbr": "SP", "name": "Sprinkler"}
FA = {"id": 6, "abbr": "FA", "name": "Fire Alarm"}


# --- numbers -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("number", "prefix", "strip", "expected"),
    [
        ("4401", "ST", "", "ST4401"),
        ("  4401 ", "ST", "", "ST4401"),
        (None, "ST", "", "ST99"),
        ("", "SC", "", "SC99"),
        ("INV-12", "", "", "INV-12"),
        ("ST4401", "ST", "ST", "ST4401"),  # stsync's own write-back is not prefixed twice
        ("ST4401", "SC", "ST", "SC4401"),
        ("ST", "ST", "ST", "STST"),  # the prefix alone is a number, not a write-back
        ("12345678", "ST", "", "ST12345678"),
    ],
)
def test_invoice_number(number: str | None, prefix: str, strip: str, expected: str) -> None:
    inv = Invoice.model_validate(
        {"id": 99, "status": "pending_accounting", "invoiceNumber": number}
    )
    assert invoice_number(inv, prefix, strip_prefix=strip) == expected


@pytest.mark.parametrize(
    ("number", "prefix", "why"),
    [
        ("123456789", "ST", "11 characters"),
        ("A/B", "ST", "forbids"),
        ("A#1", "", "forbids"),
        ("A\x01", "", "control"),
    ],
)
def test_invoice_number_refused(number: str, prefix: str, why: str) -> None:
    inv = Invoice.model_validate({"id": 7, "status": "pending_accounting", "invoiceNumber": number})
    with pytest.raises(MappingError) as exc:
        invoice_number(inv, prefix)
    assert why in str(exc.value)
    assert "invoice 7" in str(exc.value)
    assert exc.value.field == "Invoice_Or_Transaction"


def test_document_numbers() -> None:
    inv = make_invoice([item(1, "1", "10")])
    assert document_numbers(inv, RULES.invoices) == DocumentNumbers("ST4401", "SC4401")


# --- dates and batch -----------------------------------------------------------------------------
def test_invoice_date_is_local_date() -> None:
    late = int(datetime(2026, 1, 15, 23, 30, tzinfo=ZoneInfo(TZ)).timestamp())
    inv = make_invoice([item(1, "1", "1")], transactionDate=late)
    assert invoice_date(inv, tz=TZ) == date(2026, 1, 15)
    assert invoice_date(inv, tz="UTC") == date(2026, 1, 16)


def test_invoice_date_falls_back_to_created_then_fails() -> None:
    created = int(datetime(2026, 2, 1, 9, tzinfo=ZoneInfo(TZ)).timestamp())
    inv = make_invoice([item(1, "1", "1")], transactionDate=None, created=created)
    assert invoice_date(inv, tz=TZ) == date(2026, 2, 1)
    bare = make_invoice([item(1, "1", "1")], transactionDate=None)
    with pytest.raises(MappingError, match="transaction date"):
        invoice_date(bare, tz=TZ)


@pytest.mark.parametrize(
    ("window", "d", "ok"),
    [
        (DateWindow(), date(2026, 1, 15), True),
        (DateWindow(start=date(2026, 1, 1), end=date(2026, 1, 31)), date(2026, 1, 31), True),
        (DateWindow(start=date(2026, 1, 1), end=date(2026, 1, 31)), date(2026, 2, 1), False),
        (DateWindow(start=date(2026, 1, 16)), date(2026, 1, 15), False),
    ],
)
def test_processing_window(window: DateWindow, d: date, ok: bool) -> None:
    rules = RULES.invoices.model_copy(update={"processing_window": window})
    if ok:
        assert check_processing_window(d, rules, record="invoice 1") == d
    else:
        with pytest.raises(MappingError) as exc:
            check_processing_window(d, rules, record="invoice 1", connection="main")
        assert window.describe() in str(exc.value)
        assert "[connections.main.invoices.processing_window]" in str(exc.value)


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [("ST%y%m%d", "ST260115"), ("%Y%m%d", "20260115"), ("AR%Y%m", "AR202601")],
)
def test_batch_code(fmt: str, expected: str) -> None:
    assert batch_code(date(2026, 1, 15), fmt) == expected


@pytest.mark.parametrize(("fmt", "why"), [("STX%Y%m%d", "11 characters"), ("%m/%d", "forbids")])
def test_batch_code_refused(fmt: str, why: str) -> None:
    with pytest.raises(MappingError, match=why) as exc:
        batch_code(date(2026, 1, 15), fmt, connection="main")
    assert "[connections.main.invoices.batch_code_format]" in str(exc.value)


# --- split ---------------------------------------------------------------------------------------
def _ids(items: list[InvoiceItem]) -> list[int]:
    return [i.id for i in items]


@pytest.mark.parametrize(
    ("amounts", "positive", "negative"),
    [
        (["10", "5"], [1, 2], []),
        (["10", "-5", "0"], [1, 3], [2]),
        (["-10", "-5"], [], [1, 2]),
        (["-10", "0"], [], [1, 2]),  # zero lines follow the credit memo when nothing is positive
        (["0", "0"], [1, 2], []),  # a zero invoice stays an invoice
        (["-1", "2", "-3", "4"], [2, 4], [1, 3]),
    ],
)
def test_split_items(amounts: list[str], positive: list[int], negative: list[int]) -> None:
    items = [item(n, "1", a) for n, a in enumerate(amounts, 1)]
    pos, neg = split_items(items)
    assert (_ids(pos), _ids(neg)) == (positive, negative)


def test_line_extension_prefers_subtotal_and_rounds_half_up() -> None:
    assert line_extension(item(1, "3", "0.335", subtotal="1.005")) == Decimal("1.01")
    assert line_extension(item(1, "2", "2.50", subtotal=None)) == Decimal("5.00")
    assert line_extension(item(1, "-2", "2.50", subtotal=None)) == Decimal("-5.00")


# --- GL routing ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("routing", "cc", "job_type", "expected"),
    [
        ("cost_center", "100", "inspection", "4000"),  # cost center wins
        ("cost_center", "300", "inspection", "4300"),  # cc unmapped -> job type fallback
        ("cost_center", "", "repair", "4400"),
        ("job_type", "100", "inspection", "4300"),  # job type wins
        ("job_type", "100", "install", "4000"),  # type unmapped -> cost center fallback
        ("job_type", "200", None, "4100"),
    ],
)
def test_line_gl_account_routing(
    routing: str, cc: str, job_type: str | None, expected: str
) -> None:
    rules = RULES.model_copy(
        update={"invoices": RULES.invoices.model_copy(update={"gl_routing": routing})}
    )
    got = line_gl_account(item(1, "1", "1"), cost_center=cc, job_type=job_type, rules=rules)
    assert got == expected


def test_line_gl_account_unmapped_names_both_keys() -> None:
    it = item(12, "1", "1", description="Pump repair")
    with pytest.raises(MappingError) as exc:
        line_gl_account(
            it,
            cost_center="300",
            job_type="install",
            rules=RULES,
            record="invoice 1",
            connection="main",
        )
    msg = str(exc.value)
    assert "line 12 ('Pump repair')" in msg
    assert "'300'" in msg
    assert "'install'" in msg
    assert "[connections.main.cost_centers.gl_account]" in msg
    assert "[connections.main.invoices.job_type_gl]" in msg
    assert exc.value.field == "GL_Account"


@pytest.mark.parametrize(
    ("service_line", "source", "job_cc", "expected"),
    [
        (SP, "service_line", "200", "100"),
        (FA, "service_line", None, "200"),
        ({"id": 9, "abbr": "XX"}, "service_line", "200", "200"),  # unmapped -> the job's
        ({"id": 9, "abbr": "XX"}, "service_line", None, "300"),  # -> the default
        (SP, "office", "200", "200"),  # office-based: the job's cost center
        (None, "service_line", None, "300"),
    ],
)
def test_item_cost_center(
    service_line: dict[str, Any] | None, source: str, job_cc: str | None, expected: str
) -> None:
    rules = RULES.cost_centers.model_copy(update={"source": source})
    it = item(1, "1", "1", serviceLine=service_line)
    assert item_cost_center(it, job_cost_center=job_cc, rules=rules) == expected
    bare = CostCenterRules()
    assert item_cost_center(item(1, "1", "1"), job_cost_center=None, rules=bare) == ""


# --- tax -----------------------------------------------------------------------------------------
def _taxed(rates: Sequence[str | None]) -> Invoice:
    items = []
    for n, r in enumerate(rates, 1):
        tax = None if r is None else str(Decimal(10) * Decimal(r) / 100)
        items.append(item(n, "1", "10", taxRate=r, taxAmount=tax))
    return make_invoice(items)


@pytest.mark.parametrize(
    ("rates", "expected"),
    [
        (["7"], "NC"),
        (["7.00"], "NC"),  # "7.0" in config and 7.00 on the line are one rate
        (["6", "0", None], "SC"),  # untaxed lines do not count
        (["10"], "TEN"),  # 10 normalises to 1E+1 on both sides
        (["0"], "NOTAX"),
        ([None], "NOTAX"),
    ],
)
def test_sales_tax_code_from_rate(rates: list[str | None], expected: str) -> None:
    assert sales_tax_code(_taxed(rates), location_state="SC", rules=RULES.tax) == expected


def test_sales_tax_code_default_when_rate_zero_unmapped() -> None:
    rules = TaxRules(default_sales_tax_code="EXEMPT", sales_tax_by_rate={"7": "NC"})
    assert sales_tax_code(_taxed([None]), location_state=None, rules=rules) == "EXEMPT"


@pytest.mark.parametrize(
    ("rates", "why"),
    [
        (["7", "6"], "different tax rates (7% on line(s) 1; 6% on line(s) 2)"),
        (["8.25"], "tax rate 8.25% is not in [connections.main.tax.sales_tax_by_rate]"),
    ],
)
def test_sales_tax_code_refused(rates: list[str], why: str) -> None:
    with pytest.raises(MappingError) as exc:
        sales_tax_code(_taxed(rates), location_state="NC", rules=RULES.tax, connection="main")
    assert why in str(exc.value)
    assert exc.value.field == "Sales_Tax_Code"


def test_sales_tax_without_rate_is_refused() -> None:
    inv = make_invoice([item(1, "1", "10", taxAmount="0.70")])
    with pytest.raises(MappingError, match="no tax rate"):
        sales_tax_code(inv, location_state="NC", rules=RULES.tax)


@pytest.mark.parametrize(("state", "expected"), [("NC", "NCST"), ("sc", "SCST"), (" NC ", "NCST")])
def test_sales_tax_code_from_state(state: str, expected: str) -> None:
    rules = RULES.tax.model_copy(update={"derive_from_state": True})
    # the rates would be refused (mixed), but the state decides
    assert sales_tax_code(_taxed(["7", "6"]), location_state=state, rules=rules) == expected


@pytest.mark.parametrize(("state", "why"), [("VA", "'VA' is not in"), (None, "has no state")])
def test_sales_tax_code_from_state_refused(state: str | None, why: str) -> None:
    rules = RULES.tax.model_copy(update={"derive_from_state": True})
    with pytest.raises(MappingError, match=why):
        sales_tax_code(_taxed(["7"]), location_state=state, rules=rules)


# --- salesperson ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("user", "expected"),
    [
        (User(id=77, external_ids={"spectrum": "XX"}), "JD"),  # the map wins
        (User(id=5, external_ids={"spectrum": " AB "}), "AB"),
        (User(id=5), None),
        (None, None),
    ],
)
def test_salesperson_code_for(user: User | None, expected: str | None) -> None:
    got = salesperson_code_for(user, rules=RULES.invoices, external_id_key="spectrum")
    assert got == expected


def test_missing_salesperson_is_a_prerequisite_naming_the_user() -> None:
    inv = make_invoice([item(1, "1", "10")])
    with pytest.raises(PrerequisiteMissing) as exc:
        map_invoice(inv, salesperson_code=None, salesperson_user=Ref(id=5, name="Pat Sales"))
    msg = str(exc.value)
    assert "'Pat Sales' (id 5)" in msg
    assert "[connections.main.invoices.salesperson_map]" in msg
    with pytest.raises(PrerequisiteMissing, match="job has no salesperson"):
        map_invoice(inv, salesperson_code=None, salesperson_user=None)


def test_salesperson_optional_when_not_required() -> None:
    rules = RULES.model_copy(
        update={"invoices": RULES.invoices.model_copy(update={"require_salesperson": False})}
    )
    (doc,) = map_invoice(make_invoice([item(1, "1", "10")]), salesperson_code=None, rules=rules)
    assert "Salesperson_Code" not in doc.header


def test_salesperson_code_too_long_is_refused() -> None:
    with pytest.raises(MappingError, match="Salesperson_Code"):
        map_invoice(make_invoice([item(1, "1", "10")]), salesperson_code="ABCD")


# --- whole documents -----------------------------------------------------------------------------
def test_single_sign_invoice() -> None:
    inv = make_invoice(
        [
            item(
                1,
                "1",
                "450",
                description="Sprinkler inspection",
                serviceLine=SP,
                taxRate="7",
                taxAmount="31.50",
            ),
            item(
                2,
                "2",
                "25",
                description="Fire alarm check",
                serviceLine=FA,
                taxRate="0",
                taxAmount="0",
            ),
        ]
    )
    (doc,) = map_invoice(inv)
    assert doc.header == {
        "Company_Code": "ABC",
        "GL_Date": "01/15/2026",
        "Invoice_Date": "01/15/2026",
        "Batch_Code": "ST260115",
        "Customer_Code": "C00001",
        "Invoice_Or_Transaction": "ST4401",
        "Transaction_Type": "I",
        "Job_Number": "T52311",
        "Salesperson_Code": "JD",
        "Sales_Tax_Code": "NC",
        "Remarks": "ServiceTrade invoice 4401 (id 4401)",
        "Customer_PO": "PO-7781",
        "Sales_Tax_Amount": "31.50",
    }
    assert doc.details == [
        {
            "Quantity": "1",
            "Detail_Description": "Sprinkler inspection",
            "Line_Extension": "450.00",
            "GL_Account": "4000",
            "Taxable_Flag": "Y",
            "Income_Cost_Center": "100",
        },
        {
            "Quantity": "2",
            "Detail_Description": "Fire alarm check",
            "Line_Extension": "50.00",
            "GL_Account": "4100",
            "Taxable_Flag": "N",
            "Income_Cost_Center": "200",
        },
    ]
    assert signed_total([doc]) == Decimal("531.50") == inv.total_price


def test_mixed_sign_invoice_is_split_and_reconciles() -> None:
    inv = make_invoice(
        [
            item(1, "1", "450", serviceLine=SP, taxRate="7", taxAmount="31.50"),
            item(
                2,
                "1",
                "-100",
                description="Discount",
                serviceLine=SP,
                taxRate="7",
                taxAmount="-7.00",
            ),
            item(3, "-2", "15", description="Returned part", serviceLine=FA),
            item(4, "1", "0", description="No charge visit"),
        ]
    )
    inv_doc, credit = map_invoice(inv)
    assert inv_doc.header["Transaction_Type"] == "I"
    assert inv_doc.number == "ST4401"
    assert [d["Line_Extension"] for d in inv_doc.details] == ["450.00", "0.00"]
    assert inv_doc.header["Sales_Tax_Amount"] == "31.50"
    assert credit.header["Transaction_Type"] == "C"
    assert credit.number == "SC4401"
    assert [d["Line_Extension"] for d in credit.details] == ["100.00", "30.00"]
    assert [d["Quantity"] for d in credit.details] == ["1", "2"]
    assert credit.header["Sales_Tax_Amount"] == "7.00"
    assert credit.header["Remarks"].startswith("Credit lines of ServiceTrade invoice 4401")
    assert document_total(inv_doc) == Decimal("481.50")
    assert document_total(credit) == Decimal("137.00")
    assert signed_total([inv_doc, credit]) == inv.total_price == Decimal("344.50")


def test_all_negative_invoice_is_one_credit_memo() -> None:
    inv = make_invoice([item(1, "1", "-80", taxRate="7", taxAmount="-5.60")])
    (credit,) = map_invoice(inv)
    assert credit.header["Transaction_Type"] == "C"
    assert credit.header["Sales_Tax_Amount"] == "5.60"
    assert signed_total([credit]) == Decimal("-85.60")


def test_header_tax_rounding_residue_goes_to_the_invoice() -> None:
    items = [
        item(n, "1", "0.05", taxRate="7", taxAmount=None) for n in (1, 2, 3)
    ]  # 0.0035 each -> 0.00 per line, ServiceTrade rounds the header to 0.01
    inv = make_invoice(items, taxAmount="0.01", totalPrice="0.16")
    (doc,) = map_invoice(inv)
    assert doc.header["Sales_Tax_Amount"] == "0.01"
    assert signed_total([doc]) == Decimal("0.16")


def test_numbers_from_the_ledger_win() -> None:
    inv = make_invoice([item(1, "1", "10"), item(2, "1", "-5")], invoiceNumber="ST4401")
    docs = map_invoice(inv, numbers=DocumentNumbers("ST0001", "SC0001"))
    assert [d.number for d in docs] == ["ST0001", "SC0001"]
    # without them the write-back number gives the same numbers as before the write-back
    assert [d.number for d in map_invoice(inv)] == ["ST4401", "SC4401"]


def test_long_description_is_kept_in_a_message_line() -> None:
    text = "Replace sprinkler heads in the north wing\nstairwell, floors 2-4"
    (doc,) = map_invoice(make_invoice([item(1, "1", "10", description=text)]))
    flat = " ".join(text.split())
    assert doc.details[0]["Detail_Description"] == flat[:30].rstrip()
    assert doc.details[1] == {"Message": flat}
    assert document_total(doc) == Decimal("10.00")


def test_very_long_description_spans_several_message_lines() -> None:
    text = "x" * 600
    (doc,) = map_invoice(make_invoice([item(1, "1", "10", description=text)]))
    messages = [d["Message"] for d in doc.details[1:]]
    assert [len(m) for m in messages] == [250, 250, 100]
    assert "".join(messages) == text


def test_description_falls_back_to_lib_item() -> None:
    it = item(1, "1", "10", description=None, libItem={"id": 66, "name": "Inspection Labor"})
    (doc,) = map_invoice(make_invoice([it]))
    assert doc.details[0]["Detail_Description"] == "Inspection Labor"


@pytest.mark.parametrize(
    ("change", "field", "why"),
    [
        ({"totalPrice": "999"}, "totalPrice", "does not add up"),
        ({"subtotal": "1"}, "subtotal", "does not add up"),
        ({"items": []}, "items", "no lines"),
        ({"customerPo": "P" * 26}, "Customer_PO", "26 characters; Spectrum allows 25"),
        ({"transactionDate": 10**13}, "transactionDate", "unix time"),
    ],
)
def test_invoice_refused(change: dict[str, Any], field: str, why: str) -> None:
    inv = make_invoice([item(1, "1", "10")]).model_copy()
    data = inv.model_dump(by_alias=True) | change
    with pytest.raises(MappingError) as exc:
        map_invoice(Invoice.model_validate(data))
    assert exc.value.field == field
    assert why in str(exc.value)
    assert "invoice 4401" in str(exc.value)


def test_outside_processing_window_is_refused() -> None:
    rules = RULES.model_copy(
        update={
            "invoices": RULES.invoices.model_copy(
                update={"processing_window": DateWindow(start=date(2026, 2, 1))}
            )
        }
    )
    with pytest.raises(MappingError, match=r"2026-01-15 is outside the AR processing window"):
        map_invoice(make_invoice([item(1, "1", "10")]), rules=rules)


def test_tax_against_the_sign_is_refused() -> None:
    inv = make_invoice([item(1, "1", "-10", taxRate="7", taxAmount="0.70")])
    with pytest.raises(MappingError, match="runs against the sign"):
        map_invoice(inv)


def test_vendor_bill_is_skipped() -> None:
    with pytest.raises(RecordSkipped, match="vendorbill"):
        map_invoice(make_invoice([item(1, "1", "10")], type="vendorbill"))


def test_cost_center_mapping_source() -> None:
    inv = make_invoice([item(1, "1", "10"), item(2, "1", "5")])
    (doc,) = map_invoice(inv, cost_center_for_item={1: "100", 2: "200"})
    assert [d["GL_Account"] for d in doc.details] == ["4000", "4100"]
    with pytest.raises(MappingError, match="line 2: no cost center"):
        map_invoice(inv, cost_center_for_item={1: "100"})


def test_job_number_optional_customer_required() -> None:
    (doc,) = map_invoice(make_invoice([item(1, "1", "10")]), job_number=None)
    assert "Job_Number" not in doc.header
    with pytest.raises(PrerequisiteMissing, match="customer"):
        map_invoice(make_invoice([item(1, "1", "10")]), customer_code="")


# --- voids ---------------------------------------------------------------------------------------
def test_posted_document_rebuilt_from_infolink() -> None:
    inv = make_invoice(
        [
            item(
                1,
                "1.5",
                "300",
                serviceLine=SP,
                taxRate="7",
                taxAmount="31.50",
                description="A description longer than thirty characters",
            ),
        ]
    )
    (posted,) = map_invoice(inv)
    row: dict[str, Any] = {
        **{k: v for k, v in posted.header.items() if k not in ("GL_Date", "Invoice_Date")},
        "GL_Date": date(2026, 1, 15),
        "Invoice_Date": date(2026, 1, 15),
        "Sales_Tax_Amount": Decimal("31.5"),
        "Terms_Code": None,
        "Invoice_Amount": Decimal("450.00"),
        "lines": [
            {
                "Line_Number": 1,
                "Quantity": Decimal("1.5000"),
                "Line_Extension": Decimal("450"),
                "Detail_Description": posted.details[0]["Detail_Description"],
                "GL_Account": "4000",
                "Taxable_Flag": "Y",
                "Income_Cost_Center": "100",
                "Message": None,
                "Unit_Of_Measure": None,
            },
            {
                "Line_Number": 2,
                "Quantity": None,
                "Line_Extension": None,
                "Detail_Description": None,
                "Message": posted.details[1]["Message"],
            },
        ],
    }
    rebuilt = ar_request_from_infolink(row)
    assert rebuilt.header == posted.header
    assert rebuilt.details == posted.details


# --- failure comment -----------------------------------------------------------------------------
def test_failure_comment_names_row_field_and_value() -> None:
    err = PermanentError(
        "Spectrum refused invoice ST4401",
        rows=[ErrorRow("I", "GL Account does not match GL Mask", "GL_Account")],
        field="GL_Account",
        value="4000",
    )
    text = failure_comment(4401, err)
    assert "invoice 4401" in text
    assert "I: GL Account does not match GL Mask [GL_Account]" in text
    assert "Field: GL_Account, value: '4000'" in text
    assert "pending accounting" in text


def test_failure_comment_for_mapping_and_prerequisite() -> None:
    m = MappingError("invoice 9", "Sales_Tax_Code", "tax rate 8.25% is not mapped", value="8.25")
    text = failure_comment(9, m)
    assert "invoice 9: Sales_Tax_Code: tax rate 8.25% is not mapped" in text
    assert "value: '8.25'" in text
    assert "Spectrum said" not in text
    p = PrerequisiteMissing("invoice 9: salesperson: user 5 has no code", field="Salesperson_Code")
    assert "missing record or mapping" in failure_comment(9, p)


def test_failure_comment_for_a_void_says_how_to_retry() -> None:
    err = PermanentError("window closed", rows=[ErrorRow("I", "GL_Date is outside", "GL_Date")])
    text = failure_comment(5, err, voided=True)
    assert text.startswith("stsync could not credit the void of invoice 5 in Spectrum")
    assert "stsync retry invoice 5" in text
    assert "pending accounting" not in text


# --- purity --------------------------------------------------------------------------------------
def test_mapper_imports_only_models_and_stdlib() -> None:
    src = Path(__file__).resolve().parents[2] / "mappers" / "invoice.py"
    tree = ast.parse(src.read_text())
    allowed = (
        "__future__",
        "pydantic",
        "clients.errors",
        "clients.servicetrade.models",
        "clients.spectrum.models",
        "clients.spectrum.formats",
        "clients.spectrum.services",
        "mappers.",
    )
    stdlib = {"collections", "dataclasses", "datetime", "decimal", "typing", "zoneinfo"}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            assert mod.startswith(allowed) or mod.split(".")[0] in stdlib, mod
        elif isinstance(node, ast.Import):
            for alias in node.names:
                assert alias.name.split(".")[0] in stdlib, alias.name


# --- properties ----------------------------------------------------------------------------------
cents = st.decimals(min_value=-5000, max_value=5000, places=2)
quantities = st.decimals(min_value=-20, max_value=20, places=2)
rates = st.sampled_from(["0", "7", "7.0", "7.00"])


@st.composite
def line_sets(draw: st.DrawFn) -> list[InvoiceItem]:
    n = draw(st.integers(min_value=1, max_value=12))
    items = []
    for i in range(n):
        qty = draw(quantities)
        price = draw(cents)
        rate = draw(st.one_of(st.none(), rates))
        subtotal = (qty * price).quantize(Decimal("0.01"))
        tax: Decimal | None = None
        if rate is not None and draw(st.booleans()):
            tax = (subtotal * Decimal(rate) / 100).quantize(Decimal("0.01"))
        items.append(
            InvoiceItem.model_validate(
                {
                    "id": i + 1,
                    "quantity": qty,
                    "price": price,
                    "subtotal": subtotal if draw(st.booleans()) else None,
                    "taxRate": rate,
                    "taxAmount": tax,
                    "description": draw(st.text(max_size=70)),
                    "serviceLine": draw(st.sampled_from([SP, FA, None])),
                }
            )
        )
    return items


@given(line_sets(), st.booleans())
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
def test_split_reconciles_to_the_cent(items: list[InvoiceItem], with_header: bool) -> None:
    inv = make_invoice(items)
    if not with_header:  # ServiceTrade without header totals: the lines are the truth
        inv = inv.model_copy(update={"subtotal": None, "tax_amount": None, "total_price": None})
    pos, neg = split_items(inv.items)
    # never loses or duplicates a line
    assert sorted(map(id, pos + neg)) == sorted(map(id, inv.items))
    assert all(line_extension(i) >= 0 for i in pos)
    assert all(line_extension(i) <= 0 for i in neg)
    docs = map_invoice(inv)
    assert [d.header["Transaction_Type"] for d in docs] == (["I"] if pos else []) + (
        ["C"] if neg else []
    )
    # each line is one detail (plus message lines), in order
    amount_lines = [d for doc in docs for d in doc.details if "Line_Extension" in d]
    assert len(amount_lines) == len(inv.items)
    # every amount sent is positive (zero allowed)
    for doc in docs:
        assert Decimal(doc.header.get("Sales_Tax_Amount", "0")) >= 0
        for d in doc.details:
            for key in ("Line_Extension", "Quantity"):
                if key in d:
                    assert Decimal(d[key]) >= 0, (key, d)
    expected = sum((_st_ext(i) + _st_tax(i) for i in inv.items), Decimal(0))
    assert signed_total(docs) == expected
    if with_header:
        assert signed_total(docs) == inv.total_price


raw_decimals = st.one_of(
    st.none(),
    st.decimals(min_value=-1000, max_value=1000, places=2),
    st.decimals(allow_nan=False, allow_infinity=False),
    st.decimals(min_value=-(10**6), max_value=10**6, places=3),
)
raw_items = st.builds(
    lambda **kw: {k: v for k, v in kw.items() if v is not None},
    id=st.integers(min_value=1, max_value=2**63 - 1),
    description=st.one_of(st.none(), st.text(max_size=300)),
    quantity=raw_decimals,
    price=raw_decimals,
    subtotal=raw_decimals,
    taxRate=st.one_of(st.none(), st.sampled_from(["0", "7", "8.25", "-1"]), raw_decimals),
    taxAmount=raw_decimals,
    serviceLine=st.sampled_from([SP, FA, None]),
)


@given(
    items=st.lists(raw_items, max_size=6),
    # each field: mostly a valid value (so the success path is explored too), sometimes anything
    number=st.one_of(st.just("4401"), st.none(), st.text(max_size=14)),
    tx=st.one_of(st.just(TX_DATE), st.none(), st.integers(min_value=-(10**14), max_value=10**14)),
    totals=st.one_of(
        st.just({}),
        st.fixed_dictionaries(
            {"subtotal": raw_decimals, "taxAmount": raw_decimals, "totalPrice": raw_decimals}
        ),
    ),
    type_=st.sampled_from(["invoice", "invoice", "invoice", "vendorbill"]),
    po=st.one_of(st.none(), st.text(max_size=30)),
    salesperson=st.one_of(st.just("JD"), st.none(), st.text(max_size=4)),
    customer=st.one_of(st.just("C00001"), st.text(max_size=12)),
    state=st.one_of(st.just("NC"), st.none(), st.text(max_size=3)),
    derive=st.booleans(),
)
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
def test_arbitrary_invoices_raise_only_typed_errors(
    items: list[dict[str, Any]],
    number: str | None,
    tx: int | None,
    totals: dict[str, Any],
    type_: str,
    po: str | None,
    salesperson: str | None,
    customer: str,
    state: str | None,
    derive: bool,
) -> None:
    data: dict[str, Any] = {
        "id": 1,
        "status": "pending_accounting",
        "type": type_,
        "invoiceNumber": number,
        "transactionDate": tx,
        "customerPo": po,
        "items": items,
    }
    data.update({k: v for k, v in totals.items() if v is not None})
    inv = Invoice.model_validate(data)
    rules = RULES.model_copy(
        update={"tax": RULES.tax.model_copy(update={"derive_from_state": derive})}
    )
    try:
        docs = map_invoice(
            inv,
            customer_code=customer,
            salesperson_code=salesperson,
            location_state=state,
            rules=rules,
        )
    except SyncError:
        return
    for doc in docs:
        assert document_total(doc) >= 0
        for d in doc.details:
            if "Line_Extension" in d:
                assert Decimal(d["Line_Extension"]) >= 0
    if inv.total_price is not None:
        assert signed_total(docs) == inv.total_price.quantize(Decimal("0.01"))
