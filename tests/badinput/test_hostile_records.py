"""ServiceTrade records with hostile field values, synced with the plain sync functions (R2).

Each record is put into the in-process ServiceTrade simulator and synced against the Spectrum
simulator with a real SQLite ledger (fixture ``ctx``). Whatever the value, the outcome must be one
of two: synced with values Spectrum can hold (printable ASCII within the column width, digits-only
phones, codes without forbidden characters), or failed/skipped with a reason that names the record.
Never an exception out of the sync function, never a partial write (a Spectrum row without a done
ledger row, or a done ledger row without its Spectrum row).
"""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import String

from clients.spectrum import infolink_schema as t
from tasks.customer import sync_customer
from tasks.invoice import sync_invoice
from tasks.site import sync_site
from tasks.timecard import sync_timecard
from worker.ledger import RecordKey, Status

BIG_ID = 2_687_264_638_045_999  # 16 digits, as real ServiceTrade ids
FORBIDDEN_IN_CODES = set("/*?\"'><#,&~")

HOSTILE_NAMES: dict[str, str] = {
    "over length": "The Extraordinarily Long Named Hospitality And Restaurant Group " * 4,
    "control characters": "Bad\x00Name\x07 Co\r\n\t\x1b[31mRed\x7f",
    "forbidden key characters": 'O\'Neil/Smith * ? "Quoted" <b> #1, A&B ~ Co',
    "emoji and accents": "Café 🔥 Crème Brûlée 👩‍🍳 Bakery",
    "right-to-left override": "Evil \u202eoC liveE\u202c Corp",
    "zero-width and combining": "Ze\u200bro\u200d Wi\u0301dth",
    "only emoji": "🔥🔥🔥",
    "only whitespace": " \t\r\n ",
    "only control characters": "\x00\x01\x02",
    "sql-ish": "Robert'); DROP TABLE customers;--",
    "xml-ish": "<![CDATA[x]]> &amp; <Name>",
}

HOSTILE_ADDRESSES: dict[str, Any] = {
    "missing": None,
    "empty": {},
    "all null": {"street": None, "city": None, "state": None, "postalCode": None},
    "over length and odd state": {
        "street": "1234 Research Triangle Parkway Building Seven Suite 300 Attn Receiving Dock B",
        "city": "Llanfairpwllgwyngyllgogerychwyrndrobwllllantysiliogogogoch",
        "state": "North Carolina",
        "postalCode": "27701-1234-5678-9999",
    },
    "unicode": {
        "street": "１２ Ｍａｉｎ Ｓｔ 🏠",
        "city": "Zürich",
        "state": "nc",
        "postalCode": "٢٧٧٠١",
    },
    "wrong types": {"street": 12, "city": ["Durham"], "state": 5, "postalCode": 27701},
}

HOSTILE_PHONES = [
    "call me maybe",
    "☎ ²³⁴ ٣٣٣ 555-0100",
    "+1 (919) 555-0100 ext. 99999999999999",
    "",
    "0" * 40,
]


def _printable_within(table: Any, row: dict[str, Any]) -> list[str]:
    problems = []
    for col in table.c:
        value = row.get(col.name)
        if not isinstance(value, str):
            continue
        if any(not (32 <= ord(ch) <= 126) for ch in value):
            problems.append(f"{col.name}={value!r} is not printable ASCII")
        if isinstance(col.type, String) and col.type.length and len(value) > col.type.length:
            problems.append(f"{col.name}={value!r} is over {col.type.length}")
    return problems


def _sync_and_check(
    ctx: Any,
    spectrum_db: Any,
    sync: Any,
    record_type: str,
    source_id: int,
    table: Any,
    key_column: str,
) -> Any:
    before = spectrum_db.count(table.name)
    try:
        outcome = sync(ctx, source_id, "main")
    except Exception as exc:  # noqa: BLE001 - a crash is the failure this test looks for
        pytest.fail(f"{record_type} {source_id}: the sync raised {type(exc).__name__}: {exc}")
    rec = ctx.ledger.get(RecordKey("main", record_type, str(source_id)))
    added = spectrum_db.count(table.name) - before
    if outcome.ok:
        assert rec is not None and rec.status is Status.DONE and rec.spectrum_key
        assert added == 1, f"{record_type} {source_id}: {added} Spectrum rows for one record"
        (row,) = spectrum_db.rows(table.name, **{key_column: rec.spectrum_key})
        assert _printable_within(table, row) == []
        code = rec.spectrum_key
        assert not (set(code) & FORBIDDEN_IN_CODES) and code == code.upper()
        if "Phone" in row or "Site_Phone1" in row:
            phone = row.get("Phone", row.get("Site_Phone1")) or ""
            assert phone == "" or (phone.isascii() and phone.isdigit()), phone
    else:
        assert rec is not None and rec.status in (Status.FAILED, Status.SKIPPED), rec
        assert str(source_id) in (rec.last_error or ""), rec.last_error
        assert added == 0, f"{record_type} {source_id} failed but wrote {added} Spectrum row(s)"
    return outcome


def _company(st_state: Any, **fields: Any) -> int:
    base: dict[str, Any] = {
        "name": "Plain Name LLC",
        "isCustomer": True,
        "status": "active",
        "address": {"street": "1 Main St", "city": "Durham", "state": "NC", "postalCode": "27701"},
        "phone": "919-555-0100",
    }
    base.update(fields)
    return int(st_state.create("company", base)["id"])


@pytest.mark.parametrize("case", sorted(HOSTILE_NAMES))
def test_hostile_company_names(ctx: Any, st_state: Any, spectrum_db: Any, case: str) -> None:
    cid = _company(st_state, name=HOSTILE_NAMES[case])
    out = _sync_and_check(
        ctx, spectrum_db, sync_customer, "customer", cid, t.customers, "Customer_Code"
    )
    if case.startswith("only "):
        assert out.result == "failed" and "name" in out.message.lower()


@pytest.mark.parametrize("case", sorted(HOSTILE_ADDRESSES))
def test_hostile_company_addresses(ctx: Any, st_state: Any, spectrum_db: Any, case: str) -> None:
    cid = _company(st_state, address=copy.deepcopy(HOSTILE_ADDRESSES[case]))
    _sync_and_check(ctx, spectrum_db, sync_customer, "customer", cid, t.customers, "Customer_Code")


@pytest.mark.parametrize("phone", HOSTILE_PHONES)
def test_hostile_phones(ctx: Any, st_state: Any, spectrum_db: Any, phone: str) -> None:
    cid = _company(st_state, phone=phone)
    out = _sync_and_check(
        ctx, spectrum_db, sync_customer, "customer", cid, t.customers, "Customer_Code"
    )
    assert out.ok


def test_sixteen_digit_ids_for_a_company_and_its_location(
    ctx: Any, st_state: Any, spectrum_db: Any
) -> None:
    cid = _company(st_state, id=BIG_ID, name="Sixteen Digit Holdings")
    loc = st_state.create(
        "location",
        {
            "id": BIG_ID + 1,
            "name": "Sixteen Digit HQ",
            "status": "active",
            "company": {"id": cid, "name": "Sixteen Digit Holdings"},
            "address": {
                "street": "1 Main St",
                "city": "Durham",
                "state": "NC",
                "postalCode": "27701",
            },
        },
    )
    _sync_and_check(ctx, spectrum_db, sync_site, "site", int(loc["id"]), t.sites, "Site_ID")
    rec = ctx.ledger.get(RecordKey("main", "customer", str(BIG_ID)))
    assert rec.status is Status.DONE
    assert st_state.get("company", BIG_ID)["externalIds"]["spectrum"] == rec.spectrum_key


@pytest.mark.parametrize(
    "case", ["name over length", "no address", "control characters", "only emoji", "unknown state"]
)
def test_hostile_locations(ctx: Any, st_state: Any, spectrum_db: Any, case: str) -> None:
    cid = _company(st_state, name=f"Owner of {case}")
    cases: dict[str, dict[str, Any]] = {
        "name over length": {"name": "Location " * 40},
        "no address": {"address": None},
        "control characters": {"name": "Dock\x00 7\x1b", "phoneNumber": "\x07919-555-0100"},
        "only emoji": {"name": "🏭🏭"},
        "unknown state": {
            "address": {"street": "1 A St", "city": "X", "state": "ZZ", "postalCode": "1"}
        },
    }
    fields = cases[case]
    loc = st_state.create(
        "location",
        {
            "name": "Site",
            "status": "active",
            "company": {"id": cid, "name": f"Owner of {case}"},
            "address": {
                "street": "1 Main St",
                "city": "Durham",
                "state": "NC",
                "postalCode": "27701",
            },
            **fields,
        },
    )
    _sync_and_check(ctx, spectrum_db, sync_site, "site", int(loc["id"]), t.sites, "Site_ID")


def _item(template: dict[str, Any], qty: Any, price: Any) -> dict[str, Any]:
    item = {
        k: v for k, v in template.items() if k not in ("id", "subtotal", "taxAmount", "totalPrice")
    }
    item.update(quantity=qty, price=price)
    return item


@pytest.mark.parametrize(
    "case",
    [
        "negative quantity",
        "all lines negative",
        "zero quantity",
        "huge quantity",
        "many decimals",
        "emoji description",
        "no items",
    ],
)
def test_hostile_invoice_lines(
    ctx: Any, world: Any, st_state: Any, spectrum_db: Any, case: str
) -> None:
    inv_id = world.landmarks["invoice_nc"]
    items = st_state.get("invoice", inv_id)["items"]
    first = items[0]
    new_items = {
        "negative quantity": [_item(first, 2, 110), _item(first, -3, 10)],
        "all lines negative": [_item(first, -1, 110), _item(first, -2, 5)],
        "zero quantity": [_item(first, 0, 110), _item(first, 1, 10)],
        "huge quantity": [_item(first, 10**15, 99999.99)],
        "many decimals": [_item(first, 1.123456789, 10.987654321)],
        "emoji description": [{**_item(first, 1, 10), "description": "🔥 Fire \x00 sale " * 5}],
        "no items": [],
    }[case]
    st_state.update("invoice", inv_id, {"items": new_items})
    before = spectrum_db.count(t.ar_invoices.name)
    try:
        out = sync_invoice(ctx, inv_id, "main")
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"invoice {inv_id} ({case}): the sync raised {type(exc).__name__}: {exc}")
    rec = ctx.ledger.get(RecordKey("main", "invoice", str(inv_id)))
    added = spectrum_db.count(t.ar_invoices.name) - before
    if out.ok:
        assert rec.status is Status.DONE and added >= 1
        docs = [
            r
            for r in spectrum_db.rows(t.ar_invoices.name)
            if r["Invoice_Or_Transaction"].strip() in (f"ST{inv_id}", f"SC{inv_id}")
        ]
        assert len(docs) == added
        for doc in docs:
            assert Decimal(str(doc["Invoice_Amount"])) >= 0  # Spectrum takes no negatives
            assert _printable_within(t.ar_invoices, doc) == []
        for line in spectrum_db.rows(t.ar_invoice_lines.name):
            assert _printable_within(t.ar_invoice_lines, line) == []
    else:
        assert rec.status is Status.FAILED and str(inv_id) in (rec.last_error or "")
        assert added == 0
        assert st_state.get("invoice", inv_id)["status"] == "failed"


@pytest.mark.parametrize("hours", [-4, 0, 30, 1e9])
def test_hostile_timecard_hours(
    ctx: Any, world: Any, st_state: Any, spectrum_db: Any, hours: float
) -> None:
    card = next(
        tc
        for tc in world.servicetrade["timecard"]
        if tc["user"]["externalIds"].get("spectrum")
        and any(e["kind"] == "generic" for e in tc["entries"])
    )
    entries = [dict(e) for e in st_state.get("timecard", card["id"])["entries"]]
    target = next(e for e in entries if e["kind"] == "generic")
    target["hours"] = hours
    st_state.update("timecard", card["id"], {"entries": entries})
    before = spectrum_db.count(t.pre_time.name)
    try:
        sync_timecard(ctx, card["id"], "main")
    except Exception as exc:  # noqa: BLE001
        pytest.fail(f"timecard {card['id']}: the sync raised {type(exc).__name__}: {exc}")
    sid = f"{card['id']}:{target['id']}"
    rec = ctx.ledger.get(RecordKey("main", "timecard_entry", sid))
    done = [
        r for r in ctx.ledger.list_records(record_type="timecard_entry") if r.status is Status.DONE
    ]
    assert spectrum_db.count(t.pre_time.name) - before == len(done)
    if rec is not None and rec.status is Status.DONE:
        (row,) = spectrum_db.rows(t.pre_time.name, Message=rec.spectrum_key)
        assert 0 < Decimal(str(row["Hours_Employee"])) <= 24
    else:
        # no hours to pay is skipped, impossible hours fail; either way the reason names it
        assert rec is not None and rec.status in (Status.FAILED, Status.SKIPPED), rec
        assert sid.split(":")[1] in (rec.last_error or "") or str(card["id"]) in (
            rec.last_error or ""
        )
