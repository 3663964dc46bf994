"""Numbers that always fit, document slots, cost-center groups and reversals (F21). Pure."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from clients.errors import MappingError
from mappers.invoice import (
    CREDIT_MEMO,
    INVOICE,
    MAX_REVISION,
    DocumentSlot,
    base_fits,
    document_content,
    document_total,
    fallback_number_base,
    group_invoices,
    number_suffix,
    reversal_document,
    servicetrade_number_base,
    signed_total,
    slot_of_kind,
)
from mappers.rules import InvoiceRules
from tests.mappers.test_invoice import FA, RULES, SP, item, make_invoice, map_invoice

INV = RULES.invoices  # ST / SC / SV / D


# --- number bases --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("number", "expected"),
    [
        ("4401", "4401"),
        (" 4401 ", "4401"),
        ("ST4401", "4401"),  # stsync's own write-back
        (None, None),
        ("", None),
        ("   ", None),
        ("12345", "12345"),  # SV + 12345 + "-01" = 10
        ("123456", None),  # 11 with a suffix: too long to derive every number
        ("INV#12", None),  # a character Spectrum forbids
        ("A-1", None),  # "-" is kept for suffixes
        ("A 1", None),
        ("ÄB1", None),
    ],
)
def test_invoice_number_range_servicetrade_base(number: str | None, expected: str | None) -> None:
    assert servicetrade_number_base(make_invoice([], invoiceNumber=number), INV) == expected


def test_invoice_number_range_fallback_is_the_id_or_an_error_naming_the_key() -> None:
    assert fallback_number_base(make_invoice([], id=1036, invoiceNumber=None), INV) == "1036"
    with pytest.raises(MappingError) as err:
        fallback_number_base(make_invoice([], id=2687264638045377, invoiceNumber=None), INV)
    assert "numbers = { prefix, start, end, width }" in str(err.value)


def test_invoice_number_range_must_leave_room_for_every_derived_number() -> None:
    ok = InvoiceRules.model_validate(
        {
            "number_prefix": "ST",
            "credit_memo_prefix": "SC",
            "void_prefix": "SV",
            "debit_prefix": "SD",
            "numbers": {"prefix": "N", "start": 1, "end": 9999, "width": 4},
        }
    )
    assert ok.numbers is not None and ok.numbers.format(7) == "N0007"
    assert base_fits(ok.numbers.format(9999), ok)
    with pytest.raises(ValidationError, match="3 for a revision suffix"):
        InvoiceRules.model_validate(
            {"number_prefix": "ST", "numbers": {"prefix": "N", "end": 99999, "width": 5}}
        )
    with pytest.raises(ValidationError, match="must differ"):
        InvoiceRules.model_validate({"credit_memo_prefix": "X", "void_prefix": "X"})
    with pytest.raises(ValidationError, match="kept for revision suffixes"):
        InvoiceRules.model_validate({"number_prefix": "S-"})


# --- slots and suffixes --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("group", "revision", "suffix"),
    [
        (None, 0, ""),
        (None, 1, "-1"),
        (None, 10, "-A"),
        (0, 0, "-00"),
        (1, 2, "-12"),
        (11, 35, "-BZ"),
    ],
)
def test_number_suffix(group: int | None, revision: int, suffix: str) -> None:
    assert number_suffix(group, revision) == suffix


def test_rebill_revisions_are_capped() -> None:
    with pytest.raises(MappingError, match="rebilled at most"):
        number_suffix(None, MAX_REVISION + 1)


@given(
    half=st.sampled_from(["invoice", "credit_memo"]),
    group=st.one_of(st.none(), st.integers(0, 35)),
    revision=st.integers(0, MAX_REVISION),
)
@settings(max_examples=200)
def test_multi_cost_center_invoice_slots_round_trip_and_never_share_numbers(
    half: str, group: int | None, revision: int
) -> None:
    slot = DocumentSlot(half, group, revision)
    assert slot_of_kind(slot.kind) == slot
    numbers = {
        slot.number("1036", INV),
        slot.reversal_number("1036", INV),
        DocumentSlot("credit_memo" if half == "invoice" else "invoice", group, revision).number(
            "1036", INV
        ),
    }
    assert len(numbers) == 3 and all(len(n) <= 10 for n in numbers)
    other = DocumentSlot(half, group, revision + 1 if revision < MAX_REVISION else revision - 1)
    assert other.number("1036", INV) != slot.number("1036", INV)


def test_revision_zero_keeps_the_historical_numbers_and_kinds() -> None:
    slot = DocumentSlot("invoice")
    assert (slot.kind, slot.reversal_kind) == ("invoice", "void")
    assert slot.number("1036", INV) == "ST1036"
    assert slot.reversal_number("1036", INV) == "SV1036"
    assert DocumentSlot("credit_memo").reversal_number("1036", INV) == "D1036"
    assert DocumentSlot("credit_memo", 1, 2).kind == "credit_memo.1.2"


# --- groups --------------------------------------------------------------------------------------
money = st.decimals(min_value=-500, max_value=500, places=2).filter(lambda d: d != 0)


@given(
    lines=st.lists(
        st.tuples(st.integers(1, 4), money, st.sampled_from(["7", "0"]), st.booleans()),
        min_size=1,
        max_size=8,
    )
)
@settings(max_examples=150, deadline=None)
def test_multi_cost_center_invoice_groups_add_up_to_the_invoice(
    lines: list[tuple[int, Decimal, str, bool]],
) -> None:
    items = [
        item(n, str(q), str(p), taxRate=rate, serviceLine=FA if fa else SP)
        for n, (q, p, rate, fa) in enumerate(lines, 1)
    ]
    inv = make_invoice(items, taxAmount=None)
    inv = inv.model_copy(update={"tax_amount": None})
    total = inv.total_price
    try:
        parts = group_invoices(
            inv, lambda i: 1 if i.service_line is not None and i.service_line.abbr == "FA" else 0
        )
        docs = [d for _, part in parts for d in map_invoice(part)]
    except MappingError:
        return  # a line whose tax runs against its sign: refused as for one job
    assert sorted(g for g, _ in parts) == sorted({1 if fa else 0 for *_, fa in lines})
    assert sum((p.total_price or Decimal(0) for _, p in parts), Decimal(0)) == total
    assert signed_total(docs) == total


# --- reversals and content ------------------------------------------------------------------------
def test_split_void_reversal_flips_the_type_and_keeps_every_amount() -> None:
    inv = make_invoice([item(1, "2", "100", taxRate="7"), item(2, "-1", "30", taxRate="7")])
    invoice_doc, credit_doc = map_invoice(inv)
    for doc, flipped in ((invoice_doc, CREDIT_MEMO), (credit_doc, INVOICE)):
        rev = reversal_document(
            doc, number="SV4401", on=date(2026, 1, 20), rules=RULES, why="Void", invoice_id=4401
        )
        assert rev.header["Transaction_Type"] == flipped
        assert rev.number == "SV4401"
        assert document_total(rev) == document_total(doc)
        assert rev.details == doc.details
        assert rev.header["GL_Date"] == rev.header["Invoice_Date"] == "01/20/2026"
        assert rev.header["Remarks"].startswith("Void of ")
    assert signed_total([invoice_doc, credit_doc]) + signed_total(
        [
            reversal_document(
                d, number=f"X{n}", on=date(2026, 1, 20), rules=RULES, why="Void", invoice_id=4401
            )
            for n, d in enumerate((invoice_doc, credit_doc))
        ]
    ) == Decimal("0.00")


def test_rebill_content_ignores_numbers_and_dates_but_not_amounts() -> None:
    base: dict[str, Any] = {"taxRate": "7"}
    inv = make_invoice([item(1, "2", "100", **base)])
    (doc,) = map_invoice(inv)
    (later,) = map_invoice(inv, posting_date=date(2026, 1, 28))
    assert later.header["Invoice_Date"] != doc.header["Invoice_Date"]
    assert document_content(later) == document_content(doc)
    (edited,) = map_invoice(make_invoice([item(1, "3", "100", **base)]))
    assert document_content(edited) != document_content(doc)
    (moved,) = map_invoice(inv, job_number="T99999")
    assert document_content(moved) != document_content(doc)
