"""Approved ServiceTrade invoices -> Spectrum AR invoices and credit memos (F5, F6). Pure.

No I/O, no clock, no settings object: the task (``tasks/invoice.py``) resolves the customer code,
the Spectrum job, the job type, each line's cost center, the location's state and the salesperson
code, and passes them in. These functions decide what Spectrum receives.

What one approved invoice becomes (``st_invoice_to_ar_invoices``):

- **Lines** are split by the sign of their extension (``split_items``). Spectrum refuses negative
  amounts, so the positive lines form one AR invoice (``Transaction_Type=I``) and the negative lines
  one credit memo (``Transaction_Type=C``) whose amounts are sent **positive**. Zero lines ride
  with the invoice; only when an invoice has no positive line do they ride with the credit memo.
  An invoice of only zero lines becomes one zero invoice (accounting still sees it).
- **Numbers**: ``invoices.number_prefix`` / ``invoices.credit_memo_prefix`` +
  the ServiceTrade ``invoiceNumber`` (else the ServiceTrade id); at most 10 characters and none of
  Spectrum's forbidden key characters, else a ``MappingError``. A ServiceTrade number that already
  starts with ``number_prefix`` is taken as stsync's own write-back and not prefixed twice.
- **GL account** per line: ``cost_centers.gl_account[cost center]`` or
  ``invoices.job_type_gl[ServiceTrade job type]``; ``invoices.gl_routing`` names the one that wins,
  the other is the fallback. **Income cost center** = the line's cost center.
- **Sales-tax code**: from the lines' tax rate via ``tax.sales_tax_by_rate``, or from the location's
  state via ``tax.sales_tax_by_state`` when ``tax.derive_from_state``. Lines with different non-zero
  rates cannot share Spectrum's single header code: that is a ``MappingError``, not a guess.
- **Tax amount** sits on each document's header: the tax of its lines (``taxAmount`` of the item,
  else extension x rate). Any rounding residue against the ServiceTrade header goes to the invoice
  (else the credit memo), so ``invoice total - credit memo total == ServiceTrade totalPrice`` to
  the cent, always.
- **Description** (30 characters): a longer text is cut for ``Detail_Description`` and kept whole in
  a message-only detail line right after it (Spectrum's ``Message``, 250 per line).
- **Dates**: invoice and GL date = ``transactionDate`` in the account's time zone (``created``
  when ServiceTrade has none); outside ``invoices.processing_window`` -> ``MappingError`` naming
  the window.
  **Batch code** = that date formatted with ``invoices.batch_code_format`` (at most 10 characters).
- **Salesperson**: the task resolves the job's salesperson user to a Spectrum code
  (``salesperson_code_for``); none while ``invoices.require_salesperson`` -> ``PrerequisiteMissing``
  naming the ServiceTrade user.

Changes after posting (F21): every document of an invoice has a ``DocumentSlot`` (half, cost-center
group, revision) and a number derived from one base that always fits 10 characters
(``servicetrade_number_base`` / ``fallback_number_base`` / the ``invoices.numbers`` range in the
task); ``document_content`` is what a re-approval compares; ``reversal_document`` cancels a
document exactly as Spectrum holds it (rebill and void); ``group_invoices`` splits a
multi-cost-center invoice by Spectrum job. ``void_credit_memo`` / ``void_skip_reason`` /
``document_numbers`` are the first release's one-document rules; the sync no longer uses them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ValidationError

from clients.errors import MappingError, PermanentError, PrerequisiteMissing, RecordSkipped
from clients.servicetrade.models import Invoice, InvoiceItem, Ref, User
from clients.spectrum.formats import check_value, format_date, format_decimal, format_money
from clients.spectrum.models import ARInvoiceRequest, request_digest
from clients.spectrum.services import (
    AR_MULTI_LINE_DETAIL,
    AR_MULTI_LINE_HEADER,
    FORBIDDEN_KEY_CHARS,
)
from mappers.rules import ConnectionRules, CostCenterRules, InvoiceRules, TaxRules
from mappers.text import ascii_printable

#: ServiceTrade status of an invoice approved for accounting (reference §8).
PENDING_ACCOUNTING = "pending_accounting"
#: ServiceTrade status of a voided invoice.
VOID = "void"
#: Only customer invoices go to AR; vendor bills and external invoices do not.
AR_INVOICE_TYPE = "invoice"
#: Spectrum's transaction types on the AR header.
INVOICE = "I"
CREDIT_MEMO = "C"

CENT = Decimal("0.01")
#: Spectrum key fields are at most 10 characters (Invoice_Or_Transaction, Batch_Code).
KEY_MAX = 10
DESCRIPTION_MAX = 30
MESSAGE_MAX = 250
REMARKS_MAX = 65
#: Amounts beyond this cannot be a real invoice line and would overflow Decimal quantize.
_MAX_AMOUNT = Decimal("1e15")

_DETAIL_FIELDS = {f.name: f for f in AR_MULTI_LINE_DETAIL}
_HEADER_FIELDS = {f.name: f for f in AR_MULTI_LINE_HEADER}

CostCenterSource = Callable[[InvoiceItem], str | None] | Mapping[int, str]


# --- small helpers -------------------------------------------------------------------------------
def record_name(invoice: Invoice) -> str:
    """How errors name the invoice: ``invoice 4401`` (plus its number when it has one)."""
    number = (invoice.invoice_number or "").strip()
    return f"invoice {invoice.id} ({number})" if number else f"invoice {invoice.id}"


def _key(connection: str, path: str) -> str:
    return f"[connections.{connection}.{path}]"


def _cents(value: Decimal, *, record: str, field: str) -> Decimal:
    """``value`` rounded half-up to the cent; a ``MappingError`` for NaN or absurd magnitudes."""
    if not value.is_finite() or abs(value) >= _MAX_AMOUNT:
        raise MappingError(record, field, f"amount {value} is not a usable amount", value=value)
    try:
        return value.quantize(CENT, rounding=ROUND_HALF_UP)
    except InvalidOperation as exc:  # pragma: no cover - magnitude already guarded
        raise MappingError(record, field, f"amount {value} cannot be rounded", value=value) from exc


def _clean_text(text: str | None) -> str:
    """Printable ASCII on one line: Spectrum text fields are single-line, and control characters
    or emoji in a description would be stored as they are (accents folded, é -> e)."""
    return ascii_printable(text or "")


def item_description(item: InvoiceItem) -> str:
    """The text of a line: its description, else its library item's or service line's name."""
    for text in (
        item.description,
        item.lib_item.name if item.lib_item else None,
        item.service_line.name if item.service_line else None,
    ):
        cleaned = _clean_text(text)
        if cleaned:
            return cleaned
    return ""


def _describe(item: InvoiceItem) -> str:
    text = item_description(item)
    return f"line {item.id} ({text[:40]!r})" if text else f"line {item.id}"


def line_extension(item: InvoiceItem, *, record: str = "invoice") -> Decimal:
    """The line's signed amount to the cent: ServiceTrade's ``subtotal``, else quantity x price."""
    raw = item.subtotal
    if raw is None:
        if not (item.quantity.is_finite() and item.price.is_finite()) or (
            abs(item.quantity) >= _MAX_AMOUNT or abs(item.price) >= _MAX_AMOUNT
        ):
            raise MappingError(
                record,
                "Line_Extension",
                f"{_describe(item)}: quantity {item.quantity} x price {item.price} is not a usable "
                "amount",
                value=(item.quantity, item.price),
            )
        raw = item.quantity * item.price
    return _cents(raw, record=record, field=f"Line_Extension ({_describe(item)})")


def _is_taxed(item: InvoiceItem) -> bool:
    return bool(item.tax_rate) or bool(item.tax_amount)


def _line_tax(item: InvoiceItem, extension: Decimal, *, record: str) -> Decimal:
    """The line's signed tax: its ``taxAmount``, else extension x ``taxRate`` %, else 0."""
    field = f"Sales_Tax_Amount ({_describe(item)})"
    if item.tax_amount is not None:
        return _cents(item.tax_amount, record=record, field=field)
    if item.tax_rate:
        if not item.tax_rate.is_finite() or abs(item.tax_rate) >= _MAX_AMOUNT:
            raise MappingError(record, field, f"tax rate {item.tax_rate} is not usable")
        return _cents(extension * item.tax_rate / 100, record=record, field=field)
    return Decimal("0.00")


# --- the split -----------------------------------------------------------------------------------
def split_items(
    items: Sequence[InvoiceItem], *, record: str = "invoice"
) -> tuple[list[InvoiceItem], list[InvoiceItem]]:
    """Partition lines into (invoice lines, credit-memo lines) by the sign of their extension.

    Negative lines go to the credit memo. Zero lines go to the invoice, unless there is no positive
    line and there are negative ones: then they go to the credit memo so that no zero invoice is
    posted next to it. Every line lands in exactly one list; order is kept.
    """
    ext = {id(item): line_extension(item, record=record) for item in items}
    has_positive = any(v > 0 for v in ext.values())
    has_negative = any(v < 0 for v in ext.values())
    zero_to_credit = has_negative and not has_positive
    positive: list[InvoiceItem] = []
    negative: list[InvoiceItem] = []
    for item in items:
        v = ext[id(item)]
        if v < 0 or (v == 0 and zero_to_credit):
            negative.append(item)
        else:
            positive.append(item)
    return positive, negative


# --- numbers, dates, batch -----------------------------------------------------------------------
@dataclass(frozen=True)
class DocumentNumbers:
    """The Spectrum numbers of one ServiceTrade invoice's documents (stored in the ledger)."""

    invoice: str
    credit_memo: str


def number_base(invoice: Invoice, *, number_prefix: str = "") -> str:
    """The ServiceTrade part of the Spectrum numbers: ``invoiceNumber`` (trimmed) else the id.

    A number that already starts with ``number_prefix`` is stsync's own write-back (the Spectrum
    number written to ``invoiceNumber`` on success), so the prefix is removed: numbers stay stable.
    """
    raw = (invoice.invoice_number or "").strip() or str(invoice.id)
    if number_prefix and raw.startswith(number_prefix) and len(raw) > len(number_prefix):
        return raw[len(number_prefix) :]
    return raw


def _check_number(number: str, *, record: str, field: str, how: str) -> str:
    if len(number) > KEY_MAX:
        raise MappingError(
            record,
            field,
            f"{number!r} ({how}) is {len(number)} characters; Spectrum allows {KEY_MAX}: "
            "shorten the prefix or the ServiceTrade invoice number",
            value=number,
        )
    bad = sorted(set(number) & FORBIDDEN_KEY_CHARS)
    if bad:
        raise MappingError(
            record,
            field,
            f"{number!r} ({how}) contains characters Spectrum forbids in numbers: {''.join(bad)}; "
            "change the ServiceTrade invoice number",
            value=number,
        )
    if not number.isprintable():
        raise MappingError(
            record, field, f"{number!r} ({how}) contains control characters", value=number
        )
    return number


def invoice_number(st_invoice: Invoice, prefix: str, *, strip_prefix: str = "") -> str:
    """``prefix`` + the number base (see ``number_base``): at most 10 characters, no forbidden
    characters, else a ``MappingError``."""
    base = number_base(st_invoice, number_prefix=strip_prefix)
    return _check_number(
        prefix + base,
        record=record_name(st_invoice),
        field="Invoice_Or_Transaction",
        how=f"prefix {prefix!r} + ServiceTrade number {base!r}",
    )


def document_numbers(invoice: Invoice, rules: InvoiceRules) -> DocumentNumbers:
    """The invoice and credit-memo numbers of ``invoice`` (both checked; stored before writing)."""
    return DocumentNumbers(
        invoice=invoice_number(invoice, rules.number_prefix, strip_prefix=rules.number_prefix),
        credit_memo=invoice_number(
            invoice, rules.credit_memo_prefix, strip_prefix=rules.number_prefix
        ),
    )


def invoice_date(invoice: Invoice, *, tz: str) -> date:
    """The invoice's accounting date: ``transactionDate`` (else ``created``) in ``tz``."""
    record = record_name(invoice)
    ts = invoice.transaction_date if invoice.transaction_date is not None else invoice.created
    if ts is None:
        raise MappingError(record, "transactionDate", "the invoice has no transaction date")
    try:
        return datetime.fromtimestamp(ts, ZoneInfo(tz)).date()
    except ZoneInfoNotFoundError as exc:
        raise MappingError(record, "Invoice_Date", f"time zone {tz!r} is unknown") from exc
    except (OverflowError, OSError, ValueError) as exc:
        raise MappingError(
            record, "transactionDate", f"{ts} is not a usable unix time", value=ts
        ) from exc


def check_processing_window(
    d: date, rules: InvoiceRules, *, record: str, connection: str = "*"
) -> date:
    """``d`` when it lies in ``invoices.processing_window``; else a ``MappingError`` saying the
    window (Spectrum would refuse the date; guessing another date would misstate the books)."""
    if not rules.processing_window.contains(d):
        raise MappingError(
            record,
            "Invoice_Date",
            f"{d.isoformat()} is outside the AR processing window "
            f"{rules.processing_window.describe()} {_key(connection, 'invoices.processing_window')}"
            ": open the period in Spectrum and widen the window, or correct the invoice date",
            value=d,
        )
    return d


def batch_code(d: date, fmt: str, *, record: str = "invoice", connection: str = "*") -> str:
    """The AR batch code: ``d`` formatted with ``invoices.batch_code_format`` (at most 10)."""
    code = d.strftime(fmt)
    where = _key(connection, "invoices.batch_code_format")
    if not code:
        raise MappingError(record, "Batch_Code", f"{fmt!r} {where} formats to nothing", value=fmt)
    why = check_value(_HEADER_FIELDS["Batch_Code"], code)
    if why:
        raise MappingError(record, "Batch_Code", f"{code!r} from {fmt!r} {where} {why}", value=code)
    return code


# --- GL, cost center, tax, salesperson -----------------------------------------------------------
def item_cost_center(
    item: InvoiceItem, *, job_cost_center: str | None, rules: CostCenterRules
) -> str:
    """A line's income cost center: from its service line (``cost_centers.by_service_line``, when
    ``cost_centers.source`` is ``service_line``), else the job's cost center, else
    ``cost_centers.default``; ``""`` when none is configured (company without cost centers)."""
    if rules.source == "service_line" and item.service_line is not None:
        for key in (item.service_line.abbr, item.service_line.name, str(item.service_line.id)):
            if key and key in rules.by_service_line:
                return rules.by_service_line[key]
    return job_cost_center or rules.default or ""


def line_gl_account(
    item: InvoiceItem,
    *,
    cost_center: str | None,
    job_type: str | None,
    rules: ConnectionRules,
    record: str = "invoice",
    connection: str = "*",
) -> str:
    """The line's GL account: cost center -> ``cost_centers.gl_account`` or ServiceTrade job type
    -> ``invoices.job_type_gl``; ``invoices.gl_routing`` says which wins, the other is fallback."""
    by_cc = rules.cost_centers.gl_account.get(cost_center) if cost_center else None
    by_type = rules.invoices.job_type_gl.get(job_type) if job_type else None
    first, second = (
        (by_cc, by_type) if rules.invoices.gl_routing == "cost_center" else (by_type, by_cc)
    )
    gl = first or second
    if gl:
        return gl
    raise MappingError(
        record,
        "GL_Account",
        f"{_describe(item)}: cost center {cost_center or ''!r} is not in "
        f"{_key(connection, 'cost_centers.gl_account')} and job type {job_type or ''!r} is not in "
        f"{_key(connection, 'invoices.job_type_gl')}: map one of them to a non-direct GL account",
        value={"cost_center": cost_center, "job_type": job_type},
    )


def _rate_text(rate: Decimal) -> str:
    return format(rate.normalize(), "f")


def sales_tax_code(
    invoice: Invoice,
    *,
    location_state: str | None,
    rules: TaxRules,
    connection: str = "*",
) -> str:
    """The invoice's Spectrum sales-tax code (one per document header).

    With ``tax.derive_from_state``: ``tax.sales_tax_by_state[location state]``. Otherwise from the
    lines' tax rate via ``tax.sales_tax_by_rate`` (keys normalised like the rules do, so ``7`` and
    ``7.0`` are one rate). Lines without tax are ignored; an invoice without any tax takes the code
    of rate ``0`` when mapped, else ``tax.default_sales_tax_code``. Several different non-zero rates
    on one invoice -> ``MappingError``: Spectrum holds one code per invoice and picking one would
    misstate the tax.
    """
    record = record_name(invoice)
    if rules.derive_from_state:
        state = (location_state or "").strip().upper()
        if not state:
            raise MappingError(
                record,
                "Sales_Tax_Code",
                f"{_key(connection, 'tax.derive_from_state')} is on but the invoice's location "
                "has no state: add the state to the ServiceTrade location",
            )
        code = rules.sales_tax_by_state.get(state)
        if not code:
            raise MappingError(
                record,
                "Sales_Tax_Code",
                f"state {state!r} is not in {_key(connection, 'tax.sales_tax_by_state')}",
                value=state,
            )
        return code

    rates: dict[Decimal, list[int]] = {}
    for item in invoice.items:
        if item.tax_rate is None or item.tax_rate == 0:
            if item.tax_amount:
                raise MappingError(
                    record,
                    "Sales_Tax_Code",
                    f"{_describe(item)} carries tax {item.tax_amount} but no tax rate, so the "
                    "sales-tax code cannot be chosen",
                    value=item.tax_amount,
                )
            continue
        if not item.tax_rate.is_finite():
            raise MappingError(record, "Sales_Tax_Code", f"{_describe(item)}: bad tax rate")
        rates.setdefault(item.tax_rate.normalize(), []).append(item.id)
    if len(rates) > 1:
        listing = "; ".join(
            f"{_rate_text(r)}% on line(s) {', '.join(map(str, ids))}" for r, ids in rates.items()
        )
        raise MappingError(
            record,
            "Sales_Tax_Code",
            f"lines carry different tax rates ({listing}); a Spectrum invoice has one sales-tax "
            "code: give the lines one rate (or split the invoice) in ServiceTrade",
            value=sorted(rates),
        )
    if rates:
        (rate,) = rates
        # the same normalisation as mappers.rules.TaxRules (str of the normalised Decimal)
        code = rules.sales_tax_by_rate.get(str(rate))
        if not code:
            raise MappingError(
                record,
                "Sales_Tax_Code",
                f"tax rate {_rate_text(rate)}% is not in "
                f"{_key(connection, 'tax.sales_tax_by_rate')}",
                value=rate,
            )
        return code
    if invoice.tax_amount:
        raise MappingError(
            record,
            "Sales_Tax_Code",
            f"the invoice carries tax {invoice.tax_amount} but no line has a tax rate",
            value=invoice.tax_amount,
        )
    code = rules.sales_tax_by_rate.get("0") or rules.default_sales_tax_code
    if not code:
        raise MappingError(
            record,
            "Sales_Tax_Code",
            f"the invoice has no tax and neither {_key(connection, 'tax.sales_tax_by_rate')} "
            f"rate '0' nor {_key(connection, 'tax.default_sales_tax_code')} is set",
        )
    return code


def salesperson_code_for(
    user: User | None, *, rules: InvoiceRules, external_id_key: str
) -> str | None:
    """The Spectrum salesperson code of a ServiceTrade user: ``invoices.salesperson_map[user id]``,
    else the user's ``externalIds[external_id_key]``; None when neither is set."""
    if user is None:
        return None
    mapped = rules.salesperson_map.get(str(user.id))
    if mapped:
        return mapped.strip()
    ext = (user.external_ids.get(external_id_key) or "").strip()
    return ext or None


def _salesperson(
    code: str | None,
    user: Ref | None,
    *,
    rules: InvoiceRules,
    record: str,
    connection: str,
) -> str:
    if code:
        why = check_value(_HEADER_FIELDS["Salesperson_Code"], code)
        if why:
            raise MappingError(
                record, "Salesperson_Code", f"{code!r} (of the job's salesperson) {why}", value=code
            )
        return code
    if not rules.require_salesperson:
        return ""
    if user is None:
        raise PrerequisiteMissing(
            f"{record}: salesperson: the invoice's job has no salesperson (or the invoice has no "
            "job) and "
            f"{_key(connection, 'invoices.require_salesperson')} is on: assign a salesperson on "
            "the ServiceTrade job",
            field="Salesperson_Code",
        )
    who = f"{user.name!r} (id {user.id})" if user.name else f"id {user.id}"
    raise PrerequisiteMissing(
        f"{record}: salesperson: ServiceTrade user {who} has no Spectrum salesperson code: set "
        f'the user\'s external id or add "{user.id}" to '
        f"{_key(connection, 'invoices.salesperson_map')}",
        field="Salesperson_Code",
        value=user.id,
        waits_on=f"user:{user.id}",
    )


def customer_po(invoice: Invoice) -> str:
    """The customer PO for the header (25 characters). A longer PO is an error, not a cut: a
    shortened PO would no longer match the customer's paperwork (as for work orders)."""
    po = _clean_text(invoice.customer_po)
    limit = _HEADER_FIELDS["Customer_PO"].max_len
    if len(po) > limit:
        raise MappingError(
            record_name(invoice),
            "Customer_PO",
            f"customer PO {po!r} is {len(po)} characters; Spectrum allows {limit} and a shortened "
            "PO would not match the customer's paperwork: shorten it on the ServiceTrade invoice",
            value=po,
        )
    return po


# --- building the documents ----------------------------------------------------------------------
def _detail_lines(
    item: InvoiceItem,
    *,
    extension: Decimal,
    gl_account: str,
    cost_center: str,
    record: str,
) -> list[dict[str, str]]:
    """The detail line of ``item`` (amounts positive) plus message lines for long descriptions."""
    text = item_description(item)
    qty = abs(item.quantity)
    if not qty.is_finite() or qty >= _MAX_AMOUNT:
        raise MappingError(
            record, "Quantity", f"{_describe(item)}: quantity {item.quantity} is not usable"
        )
    detail = {
        "Quantity": format_decimal(qty, 4),
        "Detail_Description": text[:DESCRIPTION_MAX].rstrip(),
        "Line_Extension": format_money(abs(extension)),
        "GL_Account": gl_account,
        "Taxable_Flag": "Y" if _is_taxed(item) else "N",
        "Income_Cost_Center": cost_center,
    }
    for name, value in detail.items():
        why = check_value(_DETAIL_FIELDS[name], value)
        if why:
            raise MappingError(record, name, f"{_describe(item)}: {value!r} {why}", value=value)
    lines = [{k: v for k, v in detail.items() if v}]
    if len(text) > DESCRIPTION_MAX:
        # the full text is kept as message-only line(s) instead of being cut silently
        lines.extend(
            {"Message": text[i : i + MESSAGE_MAX]} for i in range(0, len(text), MESSAGE_MAX)
        )
    return lines


def _build(record: str, header: dict[str, str], details: list[dict[str, str]]) -> ARInvoiceRequest:
    try:
        return ARInvoiceRequest(header={k: v for k, v in header.items() if v}, details=details)
    except ValidationError as exc:
        problems = "; ".join(str(e.get("msg", "")) for e in exc.errors())
        raise MappingError(record, "ARMultiLineInvoice", problems) from exc


def _remarks(text: str) -> str:
    return text[:REMARKS_MAX]


def _cost_center_of(item: InvoiceItem, source: CostCenterSource, record: str) -> str:
    if isinstance(source, Mapping):
        if item.id not in source:
            raise MappingError(
                record, "Income_Cost_Center", f"{_describe(item)}: no cost center was resolved"
            )
        return source[item.id] or ""
    return source(item) or ""


@dataclass(frozen=True)
class _Allocation:
    """Signed extensions and the header tax of each side, reconciled with ServiceTrade's total."""

    #: keyed by ``id()`` of the item object (ServiceTrade item ids are not trusted to be unique)
    extensions: dict[int, Decimal]
    invoice_tax: Decimal
    credit_tax: Decimal


def _allocate(
    invoice: Invoice, positive: list[InvoiceItem], negative: list[InvoiceItem], record: str
) -> _Allocation:
    items = positive + negative
    ext = {id(i): line_extension(i, record=record) for i in items}
    line_tax = {id(i): _line_tax(i, ext[id(i)], record=record) for i in items}
    ext_sum = sum(ext.values(), Decimal("0.00"))
    tax_sum = sum(line_tax.values(), Decimal("0.00"))
    header_tax = (
        _cents(invoice.tax_amount, record=record, field="taxAmount")
        if invoice.tax_amount is not None
        else tax_sum
    )
    if invoice.subtotal is not None:
        subtotal = _cents(invoice.subtotal, record=record, field="subtotal")
        if abs(subtotal - ext_sum) > CENT:
            raise MappingError(
                record,
                "subtotal",
                f"the lines add up to {ext_sum} but the invoice subtotal is {subtotal}: "
                "the ServiceTrade invoice does not add up; re-save it in ServiceTrade",
                value=subtotal,
            )
    if invoice.total_price is not None:
        total = _cents(invoice.total_price, record=record, field="totalPrice")
        tax = total - ext_sum  # the tax that makes the documents reconcile to totalPrice exactly
        if abs(tax - header_tax) > CENT:
            raise MappingError(
                record,
                "totalPrice",
                f"the lines add up to {ext_sum} and the tax is {header_tax}, but the invoice "
                f"total is {total}: the ServiceTrade invoice does not add up; re-save it",
                value=total,
            )
    else:
        tax = header_tax
    invoice_tax = sum((line_tax[id(i)] for i in positive), Decimal("0.00"))
    credit_tax = sum((line_tax[id(i)] for i in negative), Decimal("0.00"))
    residue = tax - tax_sum
    if positive:
        invoice_tax += residue
    else:
        credit_tax += residue
    if invoice_tax < 0 or credit_tax > 0:
        raise MappingError(
            record,
            "Sales_Tax_Amount",
            f"the tax of the positive lines ({invoice_tax}) or of the negative lines "
            f"({credit_tax}) runs against the sign of their amounts; Spectrum takes only "
            "positive amounts: correct the line taxes in ServiceTrade",
            value=(invoice_tax, credit_tax),
        )
    return _Allocation(
        extensions=ext,
        invoice_tax=invoice_tax,
        credit_tax=-credit_tax,
    )


def st_invoice_to_ar_invoices(
    invoice: Invoice,
    *,
    customer_code: str,
    job_number: str | None,
    job_type: str | None,
    cost_center_for_item: CostCenterSource,
    location_state: str | None,
    salesperson_code: str | None,
    rules: ConnectionRules,
    tz: str,
    salesperson_user: Ref | None = None,
    numbers: DocumentNumbers | None = None,
    connection: str = "*",
    posting_date: date | None = None,
) -> list[ARInvoiceRequest]:
    """The Spectrum documents of an approved ServiceTrade invoice: the AR invoice of its positive
    lines (if any) followed by the credit memo of its negative lines (if any).

    ``numbers`` are the ledger's numbers when already allocated (the ServiceTrade number may have
    changed since, by stsync's own write-back); computed from the invoice otherwise.
    ``posting_date`` (a rebill) replaces the invoice's own date.
    """
    record = record_name(invoice)
    if invoice.type != AR_INVOICE_TYPE:
        raise RecordSkipped(
            f"{record}: type {invoice.type!r} is not a customer invoice; only "
            f"{AR_INVOICE_TYPE!r} goes to Spectrum AR"
        )
    if not invoice.items:
        raise MappingError(record, "items", "the invoice has no lines; add lines in ServiceTrade")
    if not customer_code:
        raise PrerequisiteMissing(f"{record}: customer: no Spectrum customer code was resolved")
    inv_rules = rules.invoices
    numbers = numbers or document_numbers(invoice, inv_rules)
    positive, negative = split_items(invoice.items, record=record)
    alloc = _allocate(invoice, positive, negative, record)

    # a rebill is dated the day it is posted (``posting_date``), like its reversal
    d = check_processing_window(
        posting_date or invoice_date(invoice, tz=tz),
        inv_rules,
        record=record,
        connection=connection,
    )
    salesperson = _salesperson(
        salesperson_code, salesperson_user, rules=inv_rules, record=record, connection=connection
    )
    common = {
        "Company_Code": rules.company_code,
        "GL_Date": format_date(d),
        "Invoice_Date": format_date(d),
        "Batch_Code": batch_code(
            d, inv_rules.batch_code_format, record=record, connection=connection
        ),
        "Customer_Code": customer_code,
        "Job_Number": job_number or "",
        "Salesperson_Code": salesperson,
        "Sales_Tax_Code": sales_tax_code(
            invoice, location_state=location_state, rules=rules.tax, connection=connection
        ),
        "Customer_PO": customer_po(invoice),
    }
    reference = (invoice.invoice_number or "").strip() or str(invoice.id)

    def details(lines: list[InvoiceItem]) -> list[dict[str, str]]:
        out: list[dict[str, str]] = []
        for item in lines:
            cc = _cost_center_of(item, cost_center_for_item, record)
            gl = line_gl_account(
                item,
                cost_center=cc,
                job_type=job_type,
                rules=rules,
                record=record,
                connection=connection,
            )
            out.extend(
                _detail_lines(
                    item,
                    extension=alloc.extensions[id(item)],
                    gl_account=gl,
                    cost_center=cc,
                    record=record,
                )
            )
        return out

    docs: list[ARInvoiceRequest] = []
    if positive:
        header = common | {
            "Invoice_Or_Transaction": numbers.invoice,
            "Transaction_Type": INVOICE,
            "Remarks": _remarks(f"ServiceTrade invoice {reference} (id {invoice.id})"),
            "Sales_Tax_Amount": format_money(alloc.invoice_tax),
        }
        docs.append(_build(record, header, details(positive)))
    if negative:
        header = common | {
            "Invoice_Or_Transaction": numbers.credit_memo,
            "Transaction_Type": CREDIT_MEMO,
            "Remarks": _remarks(
                f"Credit lines of ServiceTrade invoice {reference} (id {invoice.id})"
            ),
            "Sales_Tax_Amount": format_money(alloc.credit_tax),
        }
        docs.append(_build(record, header, details(negative)))
    return docs


def document_total(doc: ARInvoiceRequest) -> Decimal:
    """What a document is worth: its line extensions plus its header tax (always >= 0)."""
    lines = sum(
        (Decimal(d["Line_Extension"]) for d in doc.details if d.get("Line_Extension")),
        Decimal("0.00"),
    )
    return lines + Decimal(doc.header.get("Sales_Tax_Amount") or "0")


def signed_total(docs: Sequence[ARInvoiceRequest]) -> Decimal:
    """Invoices minus credit memos: equals the ServiceTrade ``totalPrice`` of the source invoice."""
    return sum(
        (
            document_total(d) if d.header["Transaction_Type"] == INVOICE else -document_total(d)
            for d in docs
        ),
        Decimal("0.00"),
    )


# --- voids (F6) ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class PostedDocuments:
    """What the ledger says was posted for one ServiceTrade invoice (Spectrum numbers)."""

    invoice: str | None = None
    credit_memo: str | None = None
    void_credit: str | None = None


def ar_request_from_infolink(row: Mapping[str, object]) -> ARInvoiceRequest:
    """The posted document as Spectrum holds it (``InfoLinkReader.find_ar_invoice``: the header
    row with its ``lines``), rebuilt as a request, so a void offsets what is really in the books."""
    number = str(row.get("Invoice_Or_Transaction") or "")

    def text(value: object) -> str:
        if value is None:
            return ""
        if isinstance(value, date):
            return format_date(value)
        if isinstance(value, Decimal | int | float):
            return format_decimal(Decimal(str(value)), 4) if value else "0"
        return str(value).strip()

    record = f"Spectrum invoice {number}"
    try:
        header = {f: text(row.get(f)) for f in _HEADER_FIELDS}
        if row.get("Sales_Tax_Amount") is not None:
            header["Sales_Tax_Amount"] = format_money(Decimal(str(row["Sales_Tax_Amount"])))
        raw_lines = row.get("lines")
        details: list[dict[str, str]] = []
        for line in raw_lines if isinstance(raw_lines, list) else []:
            detail = {f: text(line.get(f)) for f in _DETAIL_FIELDS}
            if line.get("Line_Extension") is not None:
                detail["Line_Extension"] = format_money(Decimal(str(line["Line_Extension"])))
            details.append({k: v for k, v in detail.items() if v})
    except (InvalidOperation, ValueError, AttributeError) as exc:
        # a number Spectrum's columns cannot hold (NaN, 1E+24 ...) or a malformed line: the row
        # cannot be offset exactly, and a person must look at it
        raise MappingError(record, "Info-Link row", f"cannot be read back: {exc!r}") from exc
    return _build(record, header, details)


# --- failures people can act on (F14) ------------------------------------------------------------
def failure_comment(invoice_id: int, error: BaseException, *, voided: bool = False) -> str:
    """The ServiceTrade comment on an invoice that failed: what went wrong and what to fix.

    Names Spectrum's row messages (code, text, column), the field and the value when known, and
    how to retry: set the invoice back to pending accounting, or (``voided``: the credit memo of a
    void failed) run ``stsync retry``, since a void invoice is never approved again.
    """
    what = "credit the void of" if voided else "post"
    parts = [f"stsync could not {what} invoice {invoice_id} in Spectrum: {error}"]
    if isinstance(error, PermanentError) and error.rows:
        parts.append("Spectrum said: " + "; ".join(str(row) for row in error.rows))
    field = getattr(error, "field", None)
    value = getattr(error, "value", None)
    if field:
        detail = f"Field: {field}"
        if value not in (None, ""):
            detail += f", value: {value!r}"
        parts.append(detail)
    how_to_retry = getattr(error, "how_to_retry", None)
    if isinstance(how_to_retry, str) and how_to_retry:
        parts.append(how_to_retry)
    elif voided:
        parts.append(
            "Fix the cause (Spectrum setup or the stsync configuration), then run "
            f"`stsync retry invoice {invoice_id}`; the credit memo is posted once."
        )
    elif isinstance(error, PrerequisiteMissing):
        parts.append("Fix the missing record or mapping, then " + retry_instruction(invoice_id))
    else:
        parts.append(
            "Fix this in ServiceTrade (or the stsync mapping / Spectrum setup), then "
            + retry_instruction(invoice_id)
        )
    return "\n".join(parts)


def retry_instruction(invoice_id: int) -> str:
    """How a failed approval is sent again: the same words in the comment, the CLI and the docs."""
    return (
        f"set the invoice back to pending accounting to send it again (or run `stsync retry "
        f"invoice {invoice_id}`, which does that in ServiceTrade after asking; --yes skips the "
        "question)."
    )


# --- numbers that always fit, revisions and cost-center groups (F21) -----------------------------
#: room every number base keeps for a suffix: ``-`` + group + revision (``ST1036-01``)
SUFFIX_ROOM = 3
SUFFIX_SEPARATOR = "-"
_B36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
#: revisions 1..35 fit one character; an invoice rebilled more often is refused
MAX_REVISION = len(_B36) - 1
#: the halves of one document set (ledger ``ar_document`` kinds of revision 0, single group)
HALVES = ("invoice", "credit_memo")
#: kind of the reversal of the revision-0 invoice document (the historical void credit memo)
VOID_KIND = "void"


def _prefixes(rules: InvoiceRules) -> tuple[str, ...]:
    return (rules.number_prefix, rules.credit_memo_prefix, rules.void_prefix, rules.debit_prefix)


def base_fits(base: str, rules: InvoiceRules) -> bool:
    """Whether ``base`` can carry every number derived from it within Spectrum's 10 characters:
    any prefix, the base, and a revision/group suffix; no forbidden, control or ``-`` characters."""
    return (
        bool(base)
        and base.isascii()
        and base.isprintable()
        and " " not in base
        and SUFFIX_SEPARATOR not in base
        and not set(base) & FORBIDDEN_KEY_CHARS
        and max(map(len, _prefixes(rules))) + len(base) + SUFFIX_ROOM <= KEY_MAX
    )


def servicetrade_number_base(invoice: Invoice, rules: InvoiceRules) -> str | None:
    """ServiceTrade's ``invoiceNumber`` as the base of the Spectrum numbers, or None when it is not
    usable (null, blank, too long for the derived numbers, or characters Spectrum forbids).

    A number starting with ``number_prefix`` is stsync's own write-back: the prefix is removed."""
    raw = (invoice.invoice_number or "").strip()
    prefix = rules.number_prefix
    if prefix and raw.startswith(prefix) and len(raw) > len(prefix):
        raw = raw[len(prefix) :]
    return raw if base_fits(raw, rules) else None


def fallback_number_base(invoice: Invoice, rules: InvoiceRules) -> str:
    """Without a configured ``invoices.numbers`` range: the ServiceTrade id, when it fits."""
    base = str(invoice.id)
    if base_fits(base, rules):
        return base
    raise MappingError(
        record_name(invoice),
        "invoiceNumber",
        f"ServiceTrade has no usable invoice number ({invoice.invoice_number!r}) and the id "
        f"{base} is too long for Spectrum's 10-character numbers (with prefixes and a revision "
        "suffix); configure a number range: [connections.<name>.invoices] numbers = "
        "{ prefix, start, end, width }",
        value=invoice.invoice_number,
    )


def number_suffix(group: int | None, revision: int, *, record: str = "invoice") -> str:
    """``""`` for the first documents of a one-job invoice, ``-<revision>`` for its rebills, and
    ``-<group><revision>`` on a multi-cost-center invoice (group and revision in base 36)."""
    if not 0 <= revision <= MAX_REVISION:
        raise MappingError(
            record,
            "Invoice_Or_Transaction",
            f"revision {revision}: an invoice can be rebilled at most {MAX_REVISION} times; "
            "correct it in Spectrum by hand",
            value=revision,
        )
    if group is None:
        return "" if revision == 0 else SUFFIX_SEPARATOR + _B36[revision]
    if not 0 <= group < len(_B36):
        raise MappingError(
            record, "Job_Number", f"more than {len(_B36)} Spectrum jobs on one invoice", value=group
        )
    return SUFFIX_SEPARATOR + _B36[group] + _B36[revision]


@dataclass(frozen=True)
class DocumentSlot:
    """Where one Spectrum document sits in an invoice's history: which half (``invoice`` of the
    positive lines or ``credit_memo`` of the negative ones), of which cost-center group (None: the
    invoice has one Spectrum job), of which revision (0 = first posting, n = n-th rebill)."""

    half: str
    group: int | None = None
    revision: int = 0

    @property
    def kind(self) -> str:
        """The ledger ``ar_document`` kind (``<invoice id>:<kind>``); revision 0 of a one-job
        invoice keeps the historical ``invoice`` / ``credit_memo``."""
        if self.group is None and self.revision == 0:
            return self.half
        return f"{self.half}.{'-' if self.group is None else self.group}.{self.revision}"

    @property
    def reversal_kind(self) -> str:
        return VOID_KIND if self.kind == "invoice" else f"reversal.{self.kind}"

    def number(self, base: str, rules: InvoiceRules, *, record: str = "invoice") -> str:
        prefix = rules.number_prefix if self.half == "invoice" else rules.credit_memo_prefix
        return _check_number(
            prefix + base + number_suffix(self.group, self.revision, record=record),
            record=record,
            field="Invoice_Or_Transaction",
            how=f"{self.half} of revision {self.revision}",
        )

    def reversal_number(self, base: str, rules: InvoiceRules, *, record: str = "invoice") -> str:
        """An invoice is reversed by a credit memo (``void_prefix``), a credit memo by a debit
        invoice (``debit_prefix``); same base and suffix, so each document has one reversal."""
        prefix = rules.void_prefix if self.half == "invoice" else rules.debit_prefix
        return _check_number(
            prefix + base + number_suffix(self.group, self.revision, record=record),
            record=record,
            field="Invoice_Or_Transaction",
            how=f"reversal of the {self.half} of revision {self.revision}",
        )

    def numbers(
        self, base: str, rules: InvoiceRules, *, record: str = "invoice"
    ) -> DocumentNumbers:
        """Both halves' numbers of this slot's group and revision."""
        return DocumentNumbers(
            invoice=DocumentSlot("invoice", self.group, self.revision).number(
                base, rules, record=record
            ),
            credit_memo=DocumentSlot("credit_memo", self.group, self.revision).number(
                base, rules, record=record
            ),
        )


def slot_of_kind(kind: str) -> DocumentSlot:
    """The inverse of ``DocumentSlot.kind``."""
    if kind in HALVES:
        return DocumentSlot(kind)
    half, group, revision = kind.split(".")
    if half not in HALVES:
        raise ValueError(f"not a document kind: {kind!r}")
    return DocumentSlot(half, None if group == "-" else int(group), int(revision))


def slot_of_document(doc: ARInvoiceRequest, group: int | None, revision: int) -> DocumentSlot:
    half = "invoice" if doc.header["Transaction_Type"] == INVOICE else "credit_memo"
    return DocumentSlot(half, group, revision)


#: what "the invoice changed after posting" compares: lines, amounts, tax, customer, job
_CONTENT_HEADER = (
    "Transaction_Type",
    "Customer_Code",
    "Job_Number",
    "Sales_Tax_Code",
    "Sales_Tax_Amount",
)


def document_content(doc: ARInvoiceRequest) -> str:
    """A digest of what a document is worth and where it goes (type, customer, job, tax code and
    amount, every line), ignoring its number, dates, batch and remarks."""
    payload = {
        "header": {f: str(doc.header.get(f) or "").strip().upper() for f in _CONTENT_HEADER},
        "details": [dict(sorted(d.items())) for d in doc.details],
    }
    return request_digest(payload)[:32]


def group_invoices(
    invoice: Invoice, group_of_item: Callable[[InvoiceItem], int]
) -> list[tuple[int, Invoice]]:
    """Split an invoice into one invoice per group (a Spectrum job of a multi-cost-center job),
    in group order. Each part carries its lines and their tax; ServiceTrade's rounding residue on
    the header tax goes to the first part, so the parts add up to ``totalPrice`` to the cent."""
    record = record_name(invoice)
    positive, negative = split_items(invoice.items, record=record)
    whole = _allocate(invoice, positive, negative, record)
    total_tax = whole.invoice_tax - whole.credit_tax
    by_group: dict[int, list[InvoiceItem]] = {}
    for item in invoice.items:
        by_group.setdefault(group_of_item(item), []).append(item)
    line_tax = {id(i): _line_tax(i, whole.extensions[id(i)], record=record) for i in invoice.items}
    residue = total_tax - sum(line_tax.values(), Decimal("0.00"))
    parts: list[tuple[int, Invoice]] = []
    for n, group in enumerate(sorted(by_group)):
        items = by_group[group]
        ext = sum((whole.extensions[id(i)] for i in items), Decimal("0.00"))
        tax = sum((line_tax[id(i)] for i in items), Decimal("0.00")) + (residue if n == 0 else 0)
        parts.append(
            (
                group,
                invoice.model_copy(
                    update={
                        "items": items,
                        "subtotal": ext,
                        "tax_amount": tax,
                        "total_price": ext + tax,
                    }
                ),
            )
        )
    return parts


def reversal_document(
    original: ARInvoiceRequest,
    *,
    number: str,
    on: date,
    rules: ConnectionRules,
    why: str,
    invoice_id: int,
    connection: str = "*",
) -> ARInvoiceRequest:
    """The document that cancels ``original`` exactly as Spectrum holds it: same lines, accounts,
    cost centers, amounts, customer, job, salesperson and tax, all positive, opposite transaction
    type (an invoice is reversed by a credit memo, a credit memo by an invoice), numbered
    ``number`` and dated ``on`` (which must lie in the processing window)."""
    record = f"ServiceTrade invoice {invoice_id}"
    inv_rules = rules.invoices
    d = check_processing_window(on, inv_rules, record=record, connection=connection)
    flipped = CREDIT_MEMO if original.header.get("Transaction_Type") == INVOICE else INVOICE
    header = dict(original.header) | {
        "Invoice_Or_Transaction": number,
        "Transaction_Type": flipped,
        "GL_Date": format_date(d),
        "Invoice_Date": format_date(d),
        "Batch_Code": batch_code(
            d, inv_rules.batch_code_format, record=record, connection=connection
        ),
        "Remarks": _remarks(f"{why} of {original.number} (ServiceTrade invoice id {invoice_id})"),
    }
    return _build(record, header, [dict(line) for line in original.details])


def owed(docs: Sequence[tuple[str, Decimal]]) -> Decimal:
    """Invoices minus credit memos of ``(transaction type, document total)`` pairs."""
    return sum((t if kind == INVOICE else -t for kind, t in docs), Decimal("0.00"))
