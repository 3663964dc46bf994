"""Hypothesis over every mapper module: only the project's typed errors may escape (R3).

For each module in ``mappers/`` (customer, site, job, work_order, invoice, timecard,
purchase_order, link) a seeded ServiceTrade record (or an Info-Link PO line / invoice row) is mutated:
a handful of its leaves get hostile values of a similar kind (control characters, emoji, 10k
characters, huge or negative numbers, NaN, None). Whatever the model accepts goes to the
mapper's entry points, which must return a request or raise a ``clients.errors.SyncError``
subclass (MappingError, RecordSkipped, PrerequisiteMissing ...) naming the problem; a TypeError,
KeyError, InvalidOperation or pydantic ValidationError escaping is a bug.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from clients.errors import SyncError
from clients.servicetrade.models import Company, Invoice, Job, Location, Timecard
from clients.spectrum.po_models import PoLine
from mappers import customer, invoice, job, link, purchase_order, site, timecard, work_order
from mappers.rules import ConnectionRules
from sandbox.seed import SeedSpec, build_world
from tests.conftest import DEMO_CONFIG, demo_env

TZ = "America/New_York"
FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

HOSTILE_TEXT = [
    "",
    " ",
    "\x00",
    "\x1b[2J",
    "\r\n\t",
    "🔥" * 40,
    "\u202e\u200b\ufeff",
    "A" * 10_000,
    "O'Brien & Sons, Inc. /*?<>#~",
    "Robert'); DROP TABLE x;--",
    "<![CDATA[]]>&amp;",
    "٣٣٣",
    "NaN",
    "-1",
    "1e309",
    "${jndi:ldap://x}",
    "%s%n",
    "\ud7ff",
    "ﷺ",
    "İ",
    "ß" * 20,
]
HOSTILE_INTS = [0, -1, 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63), 10**30]


def _text() -> st.SearchStrategy[Any]:
    return st.sampled_from(HOSTILE_TEXT) | st.text(max_size=60)


def _number() -> st.SearchStrategy[Any]:
    return (
        st.sampled_from(HOSTILE_INTS)
        | st.integers(-(2**70), 2**70)
        | st.floats(allow_nan=True, allow_infinity=True)
    )


def _like(value: Any) -> st.SearchStrategy[Any]:
    """A hostile value of roughly the same kind as ``value`` (or None, or another kind)."""
    if isinstance(value, bool):
        return st.booleans() | st.none() | _text()
    if isinstance(value, int | float):
        return _number() | st.none() | st.sampled_from(["12", "1.5", "x"])
    if isinstance(value, str):
        return _text() | st.none() | _number()
    return st.none() | _text() | _number() | st.lists(_text(), max_size=2) | st.just({})


def _leaves(obj: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _leaves(v, (*path, i))
    if path:
        yield path, obj


def _set(obj: Any, path: tuple[Any, ...], value: Any) -> None:
    for p in path[:-1]:
        obj = obj[p]
    obj[path[-1]] = value


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any]) -> dict[str, Any]:
    rec = copy.deepcopy(base)
    paths = [p for p, _ in _leaves(base)]
    chosen = draw(st.lists(st.sampled_from(paths), min_size=1, max_size=6, unique=True))
    # shorter paths first, so a replaced subtree is not written into afterwards
    for path in sorted(chosen, key=len):
        try:
            original = base
            for p in path:
                original = original[p]
            _set(rec, path, draw(_like(original)))
        except (KeyError, IndexError, TypeError):
            continue  # a parent was replaced by a scalar already
    return rec


@lru_cache(maxsize=1)
def _world() -> Any:
    return build_world(SeedSpec(companies=3))


@lru_cache(maxsize=1)
def rules() -> ConnectionRules:
    from worker.settings import load_settings

    env = demo_env(Path("/tmp"), infolink_url="sqlite://", database_url="sqlite://")
    return load_settings(DEMO_CONFIG, env).connections["main"].rules


def _first(resource: str, pred: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    return next(r for r in _world().servicetrade[resource] if pred(r))


def _parse(model: Any, raw: dict[str, Any]) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError:
        return None  # the tolerant inbound model refused it: it never reaches a mapper (assume)


def only_typed_errors(call: Callable[[], Any]) -> None:
    """Run ``call``; a SyncError is an acceptable answer, anything else fails the test."""
    with contextlib.suppress(SyncError):
        call()


BASE_COMPANY = _first("company", lambda c: bool(c.get("isCustomer")))
BASE_LOCATION = _first("location", lambda loc: loc["company"]["id"] == BASE_COMPANY["id"])
BASE_JOB = _first("job", lambda j: j["status"] == "completed" and bool(j["tags"]))
BASE_INVOICE = _first("invoice", lambda i: len(i["items"]) > 1)
BASE_TIMECARD = _first("timecard", lambda tc: {e["kind"] for e in tc["entries"]} >= {"labor"})


@FUZZ
@given(raw=mutated(BASE_COMPANY))
def test_customer_mapper(raw: dict[str, Any]) -> None:
    company = _parse(Company, raw)
    assume(company is not None)
    only_typed_errors(
        lambda: customer.st_company_to_add_customer(company, code="C00001", rules=rules())
    )
    only_typed_errors(lambda: customer.customer_sales_tax_code(company, rules()))


@FUZZ
@given(raw=mutated(BASE_LOCATION))
def test_site_mapper(raw: dict[str, Any]) -> None:
    location = _parse(Location, raw)
    assume(location is not None)
    only_typed_errors(
        lambda: site.st_location_to_wo_site(
            location, site="S00001", customer_code="C00001", rules=rules()
        )
    )


@FUZZ
@given(raw=mutated(BASE_JOB), loc=mutated(BASE_LOCATION), lines=st.lists(_text(), max_size=3))
def test_job_mapper(raw: dict[str, Any], loc: dict[str, Any], lines: list[str]) -> None:
    j, location = _parse(Job, raw), _parse(Location, loc)
    assume(j is not None and location is not None)
    r = rules()
    only_typed_errors(lambda: job.job_skip_reason(j, r.jobs))
    only_typed_errors(lambda: job.job_cost_centers(j, lines, r))
    only_typed_errors(lambda: job.job_numbers(j.number or 0, ["100", "200"], r))
    only_typed_errors(
        lambda: job.st_job_to_add_job(
            j,
            location,
            number="T52001",
            cost_center="100",
            customer_code="C00001",
            site_id="S00001",
            rules=r,
            tz=TZ,
        )
    )
    only_typed_errors(lambda: job.update_job_request("T52001", r, comment=job.job_comment(j)))


@FUZZ
@given(raw=mutated(BASE_JOB), contract=st.none() | _text())
def test_work_order_mapper(raw: dict[str, Any], contract: str | None) -> None:
    j = _parse(Job, raw)
    assume(j is not None)
    only_typed_errors(
        lambda: work_order.st_job_to_work_order(
            j, customer_code="C00001", site_id="S00001", rules=rules(), contract_number=contract
        )
    )
    only_typed_errors(lambda: work_order.work_order_number(j, rules()))


@FUZZ
@given(raw=mutated(BASE_INVOICE), state=st.none() | _text(), sales=st.none() | _text())
def test_invoice_mapper(raw: dict[str, Any], state: str | None, sales: str | None) -> None:
    inv = _parse(Invoice, raw)
    assume(inv is not None)
    r = rules()

    def both() -> None:
        docs = invoice.st_invoice_to_ar_invoices(
            inv,
            customer_code="C00001",
            job_number="T52001",
            job_type="inspection",
            cost_center_for_item=lambda item: "100",
            location_state=state,
            salesperson_code=sales,
            rules=r,
            tz=TZ,
        )
        for doc in docs:
            invoice.reversal_document(
                doc,
                number="SV1001",
                on=date(2026, 11, 25),
                rules=r,
                why="Void",
                invoice_id=inv.id,
            )

    only_typed_errors(both)
    only_typed_errors(lambda: invoice.document_numbers(inv, r.invoices))
    only_typed_errors(lambda: invoice.customer_po(inv))


INFOLINK_AR_ROW: dict[str, Any] = {
    "Invoice_Or_Transaction": "ST1001",
    "Customer_Code": "C00001",
    "Transaction_Type": "I",
    "Invoice_Date": date(2026, 11, 20),
    "GL_Date": date(2026, 11, 20),
    "Batch_Code": "ST261120",
    "Job_Number": "T52001",
    "Terms_Code": "N",
    "Salesperson_Code": "S01",
    "Sales_Tax_Code": "NC",
    "Sales_Tax_Amount": Decimal("7.00"),
    "Invoice_Amount": Decimal("100.00"),
    "Remarks": "x",
    "Customer_PO": None,
    "lines": [
        {
            "Line_Number": 1,
            "Quantity": Decimal(1),
            "Detail_Description": "Labor",
            "Line_Extension": Decimal("100.00"),
            "GL_Account": "4000",
            "Taxable_Flag": "Y",
            "Income_Cost_Center": "100",
            "Message": None,
        }
    ],
}


@FUZZ
@given(row=mutated(INFOLINK_AR_ROW))
def test_invoice_from_infolink_row(row: dict[str, Any]) -> None:
    only_typed_errors(lambda: invoice.ar_request_from_infolink(row))


@FUZZ
@given(
    raw=mutated(BASE_TIMECARD),
    employee=_text(),
    job_number=st.none() | _text(),
    state=st.none() | _text(),
    office=st.none() | st.sampled_from(HOSTILE_INTS),
)
def test_timecard_mapper(
    raw: dict[str, Any],
    employee: str,
    job_number: str | None,
    state: str | None,
    office: int | None,
) -> None:
    tc = _parse(Timecard, raw)
    assume(tc is not None)
    r = rules()
    only_typed_errors(
        lambda: timecard.employee_code(tc, external_id_key="spectrum", rules=r.timecards)
    )
    for entry in tc.entries:
        only_typed_errors(
            lambda e=entry: timecard.timecard_entry_to_pretime(  # type: ignore[misc]
                tc,
                e,
                employee_code=employee,
                job_number=job_number,
                job_state=state,
                office_id=office,
                rules=r,
                tz=TZ,
            )
        )
        only_typed_errors(
            lambda e=entry: timecard.timecard_entry_to_pretime(  # type: ignore[misc]
                tc,
                e,
                employee_code="E001",
                job_number="T52001",
                job_state="NC",
                office_id=11,
                rules=r,
                tz=TZ,
            )
        )


_po_text = st.none() | _text()
_po_money = st.decimals(allow_nan=False, allow_infinity=False) | st.sampled_from(
    [Decimal(0), Decimal("-5"), Decimal("1E+30"), Decimal("0.00001")]
)


@FUZZ
@given(
    line=st.builds(
        PoLine,
        po_number=_text(),
        line_number=_text(),
        vendor_code=_po_text,
        job_number=_po_text,
        order_date=st.none() | st.dates(),
        po_status=_po_text,
        item_code=_po_text,
        description=_po_text,
        quantity=_po_money,
        unit_cost=_po_money,
        unit_of_measure=_po_text,
        extension=st.none() | _po_money,
        gl_account=_po_text,
        phase_code=_po_text,
        cost_type=_po_text,
        line_status=_po_text,
        modified_at=st.none() | st.datetimes(min_value=datetime(1900, 1, 1)),
    ),
    codes=st.dictionaries(_text(), st.integers(1, 2**63 - 1), max_size=3),
)
def test_purchase_order_mapper(line: PoLine, codes: dict[str, int]) -> None:
    r = rules().purchase_orders
    only_typed_errors(
        lambda: purchase_order.po_line_to_job_item(
            line, st_job_id=1, lib_items_by_code=codes, rules=r, tz=TZ
        )
    )
    only_typed_errors(lambda: purchase_order.closed_line_action(line, r))
    only_typed_errors(lambda: purchase_order.po_line_key(line))


_cell = st.none() | _text() | _number() | st.dates()


def _rows(columns: tuple[str, ...]) -> st.SearchStrategy[list[dict[str, Any]]]:
    """Info-Link rows as a driver returns them: the named columns with any kind of value."""
    return st.lists(st.fixed_dictionaries(dict.fromkeys(columns, _cell)), max_size=6)


@FUZZ
@given(
    customers=_rows(("Customer_Code", "Name", "Address_1", "Zip_Code")),
    sites=_rows(("Site_Id", "Site_Name", "Site_Address1", "Site_Zip_Code")),
    jobs=_rows(("Job_Number",)),
    st_number=st.integers(-(2**63), 2**63 - 1),
    our_number=st.none() | _text(),
    probe=_cell,
)
def test_link_mapper(
    customers: list[dict[str, Any]],
    sites: list[dict[str, Any]],
    jobs: list[dict[str, Any]],
    st_number: int,
    our_number: str | None,
    probe: Any,
) -> None:
    """Day-one linking reads whatever Spectrum holds: hostile cells never crash the matcher,
    and a match is only ever a row that was given."""
    by_customer = link.KeyIndex(customers, link.name_address_key(customer.CUSTOMER_MATCH))
    by_site = link.KeyIndex(sites, link.name_address_key(customer.SITE_MATCH))
    for rows, index, code_column in (
        (customers, by_customer, "Customer_Code"),
        (sites, by_site, "Site_Id"),
    ):
        for row in rows:
            key = link.name_address_key(
                customer.CUSTOMER_MATCH if code_column == "Customer_Code" else customer.SITE_MATCH
            )(row)
            found = index.get(key)
            assert all(any(f is r for r in rows) for f in found)
            v = link.verdict("customer", 1, "label", found, code_column)
            assert v.verdict == (
                "new" if not found else "matched" if len(found) == 1 else "ambiguous"
            )
    by_number = {str(j.get("Job_Number") or ""): j for j in jobs}
    by_digits = link.KeyIndex(jobs, lambda r: link.digits(r.get("Job_Number")))
    assert set(link.digits(probe)) <= set("0123456789")
    for candidate in link.job_candidates(st_number, our_number, by_number, by_digits):
        assert any(candidate is j for j in jobs)


def test_every_mapper_module_is_fuzzed_here() -> None:
    """A new mapper module must get a fuzz test in this file."""
    import mappers

    found = {p.stem for p in Path(mappers.__file__).parent.glob("*.py")}
    covered = {
        "customer",
        "site",
        "job",
        "work_order",
        "invoice",
        "timecard",
        "purchase_order",
        "link",
    }
    helpers = {"__init__", "rules", "text"}
    assert found - helpers == covered
