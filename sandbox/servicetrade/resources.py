"""Per-resource behaviour of the simulated API: request body → stored record, list filters, rules.

Every function here runs while the caller holds ``state.lock`` and uses the store's no-copy
internals; what it returns is rendered (embedded refs refreshed) and ready to serialise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sandbox.servicetrade import assumptions, records
from sandbox.servicetrade.state import STState, merge_external_ids
from sandbox.servicetrade.validation import (
    ApiError,
    Fields,
    Predicate,
    Query,
    contains_ci,
    invalid,
    parse_id,
    ref_id,
)
from sandbox.servicetrade.webhooks import entity_type_number


@dataclass(frozen=True)
class Ctx:
    """One API call's view of the store and the caller (``user_id`` goes into webhook events)."""

    state: STState
    user_id: int | None


Body = Mapping[str, Any]
Creator = Callable[[Ctx, Body], dict[str, Any]]
Updater = Callable[[Ctx, dict[str, Any], Body], dict[str, Any]]
Deleter = Callable[[Ctx, dict[str, Any]], None]
FilterBuilder = Callable[[Ctx, Query], list[Predicate]]
SortBuilder = Callable[[Query], tuple[Callable[[Mapping[str, Any]], Any], bool]]


@dataclass(frozen=True)
class Spec:
    resource: str
    label: str
    ops: frozenset[str]
    create: Creator | None = None
    update: Updater | None = None
    delete: Deleter | None = None
    filters: FilterBuilder | None = None
    sort: SortBuilder | None = None


def not_found() -> ApiError:
    return ApiError(404, [assumptions.MSG_NOT_FOUND])


def _num(value: Decimal | None) -> float | int | None:
    return None if value is None else records.as_json_number(value)


def _lookup(
    ctx: Ctx, f: Fields, key: str, label: str, resource: str, id_: int | None
) -> dict[str, Any] | None:
    """The record an id field names; a validation error when it does not exist."""
    if id_ is None:
        return None
    rec = ctx.state.peek(resource, id_)
    if rec is None:
        f.fail(key, f"{label} {id_} not found")
    return rec


def _ref(resource: str, rec: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if rec is None else records.ref_of(resource, rec)


def _address(f: Fields, current: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``address{}`` or the flat ``addressStreet``... keys (§5.2), merged over ``current``."""
    given: dict[str, Any] = {}
    nested = f.mapping("address", "Address")
    if nested is not None:
        for key in ("street", "city", "state", "postalCode"):
            if key in nested:
                value = nested[key]
                if value is not None and not isinstance(value, str):
                    f.fail("address", f"Address {key} must be text")
                given[key] = value
    for flat, key in (
        ("addressStreet", "street"),
        ("addressCity", "city"),
        ("addressState", "state"),
        ("addressPostalCode", "postalCode"),
    ):
        if flat in f.body:
            value = f.body[flat]
            if value is not None and not isinstance(value, str):
                f.fail(flat, f"{flat} must be text")
            given[key] = value
    if not given:
        return None
    base = dict(current or {})
    base.update(given)
    return base


def _externals_for_create(f: Fields) -> dict[str, str]:
    return merge_external_ids({}, f.external_ids() or {})


def _common_updates(f: Fields, changes: dict[str, Any]) -> None:
    ext = f.external_ids()
    if ext is not None:
        changes["externalIds"] = ext


def _set(changes: dict[str, Any], key: str, value: Any, f: Fields) -> None:
    """Put ``value`` into ``changes`` when the body named ``key`` (null clears it)."""
    if f.has(key):
        changes[key] = value


# --- company ------------------------------------------------------------------------------------
def _company_fields(ctx: Ctx, body: Body, current: Mapping[str, Any] | None) -> dict[str, Any]:
    f = Fields(body)
    creating = current is None
    out: dict[str, Any] = {}
    name = f.text("name", "Name", required=creating, max_len=255)
    if name is not None:
        out["name"] = name
    status = f.choice("status", "Status", records.COMPANY_STATUSES)
    for key, value in (
        ("status", status),
        ("refNumber", f.text("refNumber", "Reference number")),
        ("phone", f.text("phone", "Phone")),
        ("isCustomer", f.boolean("isCustomer", "Is customer")),
        ("isVendor", f.boolean("isVendor", "Is vendor")),
        ("isPartsVendor", f.boolean("isPartsVendor", "Is parts vendor")),
        ("isPrimeContractor", f.boolean("isPrimeContractor", "Is prime contractor")),
    ):
        if value is not None or (not creating and f.has(key) and key in ("refNumber", "phone")):
            out[key] = value
    address = _address(f, None if current is None else current.get("address"))
    if address is not None:
        out["address"] = address
    if creating:
        out.setdefault("status", "active")
        out.setdefault("isCustomer", True)
        out.setdefault("isVendor", False)
        out["externalIds"] = _externals_for_create(f)
    else:
        _common_updates(f, out)
    f.check()
    return out


def create_company(ctx: Ctx, body: Body) -> dict[str, Any]:
    return ctx.state.insert("company", _company_fields(ctx, body, None), user_id=ctx.user_id)


def update_company(ctx: Ctx, current: dict[str, Any], body: Body) -> dict[str, Any]:
    changes = _company_fields(ctx, body, current)
    return ctx.state.patch("company", current["id"], changes, user_id=ctx.user_id)


def company_filters(ctx: Ctx, q: Query) -> list[Predicate]:
    preds: list[Predicate] = []
    name = q.text("name")
    if name:
        preds.append(lambda r: contains_ci(r.get("name"), name))
    ref = q.text("refNumber")
    if ref:
        preds.append(lambda r: r.get("refNumber") == ref)
    statuses = q.choices("status", records.COMPANY_STATUSES)
    if statuses:
        preds.append(lambda r: r.get("status") in statuses)
    for flag in ("isVendor", "isCustomer", "isPartsVendor", "isPrimeContractor"):
        value = q.boolean(flag)
        if value is not None:
            preds.append(_flag_is(flag, value))
    for key in ("city", "state", "postalCode"):
        wanted = q.text(key)
        if wanted:
            preds.append(_address_is(key, wanted))
    return preds


def _flag_is(flag: str, value: bool) -> Predicate:
    return lambda r: bool(r.get(flag)) is value


def _address_is(key: str, wanted: str) -> Predicate:
    return lambda r: str((r.get("address") or {}).get(key) or "").lower() == wanted.lower()


def _ref_in(field: str, ids: set[int]) -> Predicate:
    return lambda r: ref_id(r, field) in ids


# --- location -----------------------------------------------------------------------------------
def _primary_office(ctx: Ctx) -> Mapping[str, Any] | None:
    state = ctx.state
    return assumptions.primary_office(
        state.scan("location"), lambda loc: state.peek("company", ref_id(loc, "company"))
    )


def _office_ref(loc: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": loc["id"], "uri": loc.get("uri"), "name": loc.get("name")}


def _location_fields(ctx: Ctx, body: Body, current: Mapping[str, Any] | None) -> dict[str, Any]:
    f = Fields(body)
    creating = current is None
    out: dict[str, Any] = {}
    name = f.text("name", "Name", required=creating, max_len=255)
    if name is not None:
        out["name"] = name
    company_id = f.id("companyId", "Company", required=creating)
    company = _lookup(ctx, f, "companyId", "Company", "company", company_id)
    if company is not None:
        out["company"] = _ref("company", company)
    address = _address(f, None if current is None else current.get("address"))
    if address is not None:
        out["address"] = address
    elif creating:
        f.fail("address", "Address is required")
    for key, value in (
        ("status", f.choice("status", "Status", records.LOCATION_STATUSES)),
        ("refNumber", f.text("refNumber", "Reference number")),
        ("storeNumber", f.text("storeNumber", "Store number")),
        ("phoneNumber", f.text("phoneNumber", "Phone number")),
        ("email", f.text("email", "Email")),
        ("taxable", f.boolean("taxable", "Taxable")),
        ("lat", _num(f.number("lat", "Latitude"))),
        ("lon", _num(f.number("lon", "Longitude"))),
    ):
        if value is not None or (not creating and f.has(key)):
            out[key] = value
    contact_id = f.id("primaryContactId", "Primary contact")
    if contact_id is not None:
        out["primaryContact"] = {"id": contact_id}
    office_ids = f.id_list("officeIds", "Offices")
    if office_ids is not None:
        offices = []
        for oid in office_ids:
            office = _lookup(ctx, f, "officeIds", "Office", "location", oid)
            if office is not None:
                offices.append(_office_ref(office))
        out["offices"] = offices
    if creating:
        out.setdefault("status", "active")
        out.setdefault("taxable", assumptions.LOCATION_DEFAULT_TAXABLE)
        if "offices" not in out:
            primary = _primary_office(ctx)
            out["offices"] = [_office_ref(primary)] if primary is not None else []
        out["externalIds"] = _externals_for_create(f)
    else:
        _common_updates(f, out)
    f.check()
    return out


def create_location(ctx: Ctx, body: Body) -> dict[str, Any]:
    return ctx.state.insert("location", _location_fields(ctx, body, None), user_id=ctx.user_id)


def update_location(ctx: Ctx, current: dict[str, Any], body: Body) -> dict[str, Any]:
    changes = _location_fields(ctx, body, current)
    return ctx.state.patch("location", current["id"], changes, user_id=ctx.user_id)


def location_filters(ctx: Ctx, q: Query) -> list[Predicate]:
    preds: list[Predicate] = []
    state = ctx.state
    name = q.text("name")
    if name:
        preds.append(
            lambda r: contains_ci(r.get("name"), name) or contains_ci(r.get("storeNumber"), name)
        )
    company_ids = q.ids("companyId")
    if company_ids:
        preds.append(lambda r: ref_id(r, "company") in company_ids)
    statuses = q.choices("status", records.LOCATION_STATUSES)
    if statuses:
        preds.append(lambda r: r.get("status") in statuses)
    ref = q.text("refNumber")
    if ref:
        preds.append(lambda r: r.get("refNumber") == ref)
    office_ids = q.ids("officeIds")
    if office_ids:
        preds.append(
            lambda r: any(
                isinstance(o, Mapping) and o.get("id") in office_ids for o in r.get("offices") or []
            )
        )

    def company_flag(rec: Mapping[str, Any], flag: str, default: bool) -> bool:
        company = state.peek("company", ref_id(rec, "company"))
        if company is None or company.get(flag) is None:
            return default
        return bool(company.get(flag))

    is_vendor = q.boolean("isVendor")
    is_customer = q.boolean("isCustomer")
    if is_vendor is not None:
        preds.append(lambda r: company_flag(r, "isVendor", False) is is_vendor)
    if is_customer is None and is_vendor is None:
        is_customer = assumptions.LOCATION_DEFAULT_IS_CUSTOMER
    if is_customer is not None:
        preds.append(lambda r: company_flag(r, "isCustomer", True) is is_customer)
    return preds


# --- job ----------------------------------------------------------------------------------------
def _job_fields(ctx: Ctx, body: Body, current: Mapping[str, Any] | None) -> dict[str, Any]:
    f = Fields(body)
    creating = current is None
    out: dict[str, Any] = {}
    location = _lookup(
        ctx,
        f,
        "locationId",
        "Location",
        "location",
        f.id("locationId", "Location", required=creating),
    )
    vendor = _lookup(
        ctx, f, "vendorId", "Vendor", "company", f.id("vendorId", "Vendor", required=creating)
    )
    job_type = f.choice("type", "Type", records.JOB_TYPES, required=creating)
    customer = _lookup(ctx, f, "customerId", "Customer", "company", f.id("customerId", "Customer"))
    owner = _lookup(ctx, f, "ownerId", "Owner", "user", f.id("ownerId", "Owner"))
    sales = _lookup(ctx, f, "salesId", "Salesperson", "user", f.id("salesId", "Salesperson"))
    contract = _lookup(ctx, f, "contractId", "Contract", "contract", f.id("contractId", "Contract"))
    office_key = "assignedOfficeId" if f.has("assignedOfficeId") else "officeId"
    office = _lookup(ctx, f, office_key, "Office", "location", f.id(office_key, "Office"))
    status = f.choice("status", "Status", records.JOB_STATUSES)
    # §5.3: customerPo holds at most 40 characters
    for key, value in (
        ("name", f.text("name", "Name", max_len=255)),
        ("customName", f.text("customName", "Custom name")),
        ("description", f.text("description", "Description")),
        ("customerPo", f.text("customerPo", "Customer PO", max_len=40)),
        ("refNumber", f.text("refNumber", "Reference number")),
        ("estimatedPrice", _num(f.number("estimatedPrice", "Estimated price"))),
        ("dueBy", f.unix("dueBy", "Due by")),
        ("dueAfter", f.unix("dueAfter", "Due after")),
        ("completedOn", f.unix("completedOn", "Completed on")),
        ("scheduledDate", f.unix("scheduledDate", "Scheduled date")),
        ("visibility", f.text_list("visibility", "Visibility")),
        ("isProject", f.boolean("isProject", "Is project")),
    ):
        if value is not None or (not creating and f.has(key)):
            out[key] = value
    external_ids = f.external_ids()
    f.check()
    if job_type is not None:
        out["type"] = job_type
    if status is not None:
        out["status"] = status
    if location is not None:
        out["location"] = _ref("location", location)
        if customer is None and creating:
            # §5.3: customerId defaults to the location's company
            customer = ctx.state.peek("company", ref_id(location, "company"))
        if office is None and creating:
            offices = location.get("offices") or []
            if offices:
                office = ctx.state.peek("location", offices[0].get("id"))
    if vendor is not None:
        out["vendor"] = _ref("company", vendor)
    if customer is not None:
        out["customer"] = _ref("company", customer)
    if owner is not None:
        out["owner"] = _ref("user", owner)
    if sales is not None:
        out["salesperson"] = _ref("user", sales)
    if contract is not None:
        out["contract"] = _ref("contract", contract)
    if office is not None:
        out["assignedOffice"] = _office_ref(office)
    if creating:
        out.setdefault("status", assumptions.JOB_DEFAULT_STATUS)
        if "name" not in out:
            where = location.get("name") if location else None
            pretty = str(job_type or "job").replace("_", " ").title()
            out["name"] = f"{pretty} at {where}" if where else pretty
        out.setdefault("customerPo", None)
        out.setdefault("description", None)
        for key in ("owner", "salesperson", "assignedOffice", "contract", "completedOn", "dueBy"):
            out.setdefault(key, None)
        out.setdefault("appointments", [])
        out.setdefault("tags", [])
        out["externalIds"] = merge_external_ids({}, external_ids or {})
    elif external_ids is not None:
        out["externalIds"] = external_ids
    return out


def create_job(ctx: Ctx, body: Body) -> dict[str, Any]:
    return ctx.state.insert("job", _job_fields(ctx, body, None), user_id=ctx.user_id)


def update_job(ctx: Ctx, current: dict[str, Any], body: Body) -> dict[str, Any]:
    changes = _job_fields(ctx, body, current)
    return ctx.state.patch("job", current["id"], changes, user_id=ctx.user_id)


def _tag_names(rec: Mapping[str, Any]) -> set[str]:
    return {str(t.get("name")) for t in rec.get("tags") or [] if isinstance(t, Mapping)}


def _range(q: Query, field: str, after: str, before: str) -> Predicate | None:
    low = q.integer(after)
    high = q.integer(before)
    if low is None and high is None:
        return None

    def pred(r: Mapping[str, Any]) -> bool:
        value = r.get(field)
        if not isinstance(value, int | float):
            return False
        return (low is None or value >= low) and (high is None or value <= high)

    return pred


def job_filters(ctx: Ctx, q: Query) -> list[Predicate]:
    preds: list[Predicate] = []
    number = q.integer("number")
    if number is not None:
        preds.append(lambda r: r.get("number") == number)
    statuses = q.choices("status", (*records.JOB_STATUSES, "all"))
    if statuses is None:
        # §5.3: GET /job defaults to status=scheduled unless a number is given
        statuses = None if q.has("number") else {"scheduled"}
    elif "all" in statuses:
        statuses = set(records.JOB_STATUSES) - {"canceled"}
    if statuses is not None:
        wanted = statuses
        preds.append(lambda r: r.get("status") in wanted)
    ids = q.ids("jobIds") or set()
    single = q.id("id")
    if single is not None:
        ids.add(single)
    if ids:
        preds.append(lambda r: r["id"] in ids)
    types = q.choices("type", records.JOB_TYPES)
    if types:
        preds.append(lambda r: r.get("type") in types)
    for param, field in (
        ("locationId", "location"),
        ("vendorId", "vendor"),
        ("customerId", "customer"),
        ("ownerId", "owner"),
        ("salesId", "salesperson"),
        ("officeIds", "assignedOffice"),
        ("contractId", "contract"),
    ):
        wanted_ids = q.ids(param)
        if wanted_ids:
            preds.append(_ref_in(field, wanted_ids))
    tags = q.text("tag")
    if tags:
        needed = {t.strip() for t in tags.split(",") if t.strip()}
        preds.append(lambda r: needed <= _tag_names(r))
    for field, after, before in (
        ("dueBy", "dueByBegin", "dueByEnd"),
        ("completedOn", "completedOnBegin", "completedOnEnd"),
        ("scheduledDate", "scheduleDateFrom", "scheduleDateTo"),
    ):
        pred = _range(q, field, after, before)
        if pred is not None:
            preds.append(pred)
    return preds


# --- invoice ------------------------------------------------------------------------------------
def _check_contract(
    ctx: Ctx, contract_id: int, customer_id: int | None, location_id: int | None
) -> dict[str, Any]:
    contract = ctx.state.peek("contract", contract_id)
    if contract is None:
        raise invalid("contractId", f"Contract {contract_id} not found")
    if not assumptions.contract_applies(contract, customer_id=customer_id, location_id=location_id):
        raise ApiError(409, [f"Contract {contract_id} does not apply to this invoice's job"])
    return contract


def _invoice_items(ctx: Ctx, raw_items: Any, f: Fields, apply_tax: bool) -> list[dict[str, Any]]:
    if not isinstance(raw_items, list):
        f.fail("items", "Items must be a list")
        return []
    items: list[dict[str, Any]] = []
    for index, raw in enumerate(raw_items):
        if not isinstance(raw, Mapping):
            f.fail(f"items[{index}]", f"Item {index} must be an object")
            continue
        g = Fields(raw, prefix=f"items[{index}].")
        quantity = g.number("quantity", f"Item {index} quantity")
        price = g.number("price", f"Item {index} price", required=True)
        rate = g.number("taxRate", f"Item {index} tax rate")
        item: dict[str, Any] = {
            "description": g.text("description", f"Item {index} description"),
            "quantity": Decimal(1) if quantity is None else quantity,
            "price": price if price is not None else Decimal(0),
            "taxRate": rate,
            "orderIndex": index,
        }
        order = g.body.get("orderIndex")
        if isinstance(order, int) and not isinstance(order, bool):
            item["orderIndex"] = order
        lib = _lookup(
            ctx,
            g,
            "libItemId",
            "Library item",
            "libitem",
            g.id("libItemId", "Library item") or g.id("libitemId", "Library item"),
        )
        line = _lookup(
            ctx,
            g,
            "serviceLineId",
            "Service line",
            "serviceline",
            g.id("serviceLineId", "Service line"),
        )
        job_item = _lookup(
            ctx, g, "jobItemId", "Job item", "jobitem", g.id("jobItemId", "Job item")
        )
        item["libItem"] = _ref("libitem", lib)
        item["serviceLine"] = _ref("serviceline", line)
        item["jobItem"] = None if job_item is None else {"id": job_item["id"]}
        f.errors.update(g.errors)
        if not g.errors:
            items.append(records.price_item(item, apply_tax=apply_tax))
    return items


def _items_from_job(ctx: Ctx, job_id: int, apply_tax: bool) -> list[dict[str, Any]]:
    """§5.5 [A]: one line per job item of the job, priced at its price or else its cost."""
    items: list[dict[str, Any]] = []
    for ji in ctx.state.scan("jobitem"):
        if ref_id(ji, "job") != job_id:
            continue
        price = ji.get("price") if ji.get("price") is not None else ji.get("cost")
        item = {
            "description": ji.get("name") or ji.get("description"),
            "quantity": ji.get("quantity", 1),
            "price": price or 0,
            "taxRate": None,
            "orderIndex": len(items),
            "libItem": ji.get("libItem"),
            "serviceLine": ji.get("serviceLine"),
            "jobItem": {"id": ji["id"]},
        }
        items.append(records.price_item(item, apply_tax=apply_tax))
    return items


def create_invoice(ctx: Ctx, body: Body) -> dict[str, Any]:
    f = Fields(body)
    job = _lookup(ctx, f, "jobId", "Job", "job", f.id("jobId", "Job"))
    has_job = f.has("jobId")
    location = _lookup(
        ctx,
        f,
        "locationId",
        "Location",
        "location",
        f.id("locationId", "Location", required=not has_job),
    )
    customer = _lookup(
        ctx,
        f,
        "customerId",
        "Customer",
        "company",
        f.id("customerId", "Customer", required=not has_job),
    )
    vendor = _lookup(
        ctx, f, "vendorId", "Vendor", "company", f.id("vendorId", "Vendor", required=not has_job)
    )
    assigned = _lookup(
        ctx, f, "assignedUserId", "Assigned user", "user", f.id("assignedUserId", "Assigned user")
    )
    contract_id = f.id("contractId", "Contract")
    apply_tax = f.boolean("applyTax", "Apply tax")
    inv_type = f.choice("type", "Type", records.INVOICE_TYPES)
    status = f.choice("status", "Status", records.INVOICE_STATUSES)
    fields: dict[str, Any] = {}
    for key, value in (
        ("name", f.text("name", "Name", max_len=255)),
        ("invoiceNumber", f.text("invoiceNumber", "Invoice number")),
        ("refNumber", f.text("refNumber", "Reference number")),
        ("customerPo", f.text("customerPo", "Customer PO", max_len=40)),
        ("notes", f.text("notes", "Notes")),
        ("partial", f.boolean("partial", "Partial")),
        ("transactionDate", f.unix("transactionDate", "Transaction date")),
        ("dueDate", f.unix("dueDate", "Due date")),
    ):
        fields[key] = value
    taxed = apply_tax is not False
    items: list[dict[str, Any]] = []
    if "items" in body and body["items"] is not None:
        items = _invoice_items(ctx, body["items"], f, taxed)
    external_ids = merge_external_ids({}, f.external_ids() or {})
    f.check()
    if job is not None:
        location = location or ctx.state.peek("location", ref_id(job, "location"))
        customer = customer or ctx.state.peek("company", ref_id(job, "customer"))
        vendor = vendor or ctx.state.peek("company", ref_id(job, "vendor"))
        if body.get("items") is None and assumptions.INVOICE_ITEMS_FROM_JOB_ITEMS:
            items = _items_from_job(ctx, job["id"], taxed)
    contract = None
    if contract_id is not None:
        contract = _check_contract(
            ctx,
            contract_id,
            customer["id"] if customer else None,
            location["id"] if location else None,
        )
    for i, item in enumerate(items):
        items[i] = {"id": ctx.state.new_id(), **item}
    rec: dict[str, Any] = {
        "name": fields["name"]
        or assumptions.invoice_default_name(job.get("number") if job else None),
        "type": inv_type or assumptions.INVOICE_DEFAULT_TYPE,
        "status": status or assumptions.INVOICE_DEFAULT_STATUS,
        "substatus": None,
        "invoiceNumber": fields["invoiceNumber"],
        "refNumber": fields["refNumber"],
        "customerPo": fields["customerPo"]
        if fields["customerPo"] is not None
        else (job.get("customerPo") if job else None),
        "notes": fields["notes"],
        "partial": bool(fields["partial"]),
        "isPaid": status == "paid",
        "isSent": status == "sent",
        "transactionDate": fields["transactionDate"]
        if fields["transactionDate"] is not None
        else ctx.state.now(),
        "dueDate": fields["dueDate"],
        "customer": _ref("company", customer),
        "vendor": _ref("company", vendor),
        "location": _ref("location", location),
        "job": _ref("job", job),
        "contract": _ref("contract", contract),
        "assignedUser": _ref("user", assigned),
        "assignedOffice": job.get("assignedOffice") if job else None,
        "items": items,
        "totalPaidAmount": 0,
        "tags": [],
        "externalIds": external_ids,
        **records.invoice_totals(items),
    }
    return ctx.state.insert("invoice", rec, user_id=ctx.user_id)


def update_invoice_item(ctx: Ctx, item_id: int, body: Body) -> dict[str, Any]:
    """``PUT /invoiceitem/{id}`` (§4 "Invoice item", fields §5.5 [W + A]): change a line's
    ``description``, ``quantity``, ``price`` or ``taxRate``; the line and its invoice's money are
    recomputed and the invoice announces ``updated``, as an edit in the web app does."""
    owner = next(
        (
            inv
            for inv in ctx.state.scan("invoice")
            if any(i.get("id") == item_id for i in inv.get("items") or [])
        ),
        None,
    )
    if owner is None:
        raise ApiError(404, [assumptions.MSG_NOT_FOUND])
    f = Fields(body)
    changes = {
        "description": f.text("description", "Description"),
        "quantity": f.number("quantity", "Quantity"),
        "price": f.number("price", "Price"),
        "taxRate": f.number("taxRate", "Tax rate"),
    }
    f.check()
    items = []
    for item in owner.get("items") or []:
        if item.get("id") == item_id:
            item = {**item, **{k: v for k, v in changes.items() if v is not None}}
        items.append(dict(item))
    invoice = ctx.state.patch("invoice", owner["id"], {"items": items}, user_id=ctx.user_id)
    return next(dict(i) for i in invoice["items"] if i.get("id") == item_id)


def update_invoice(ctx: Ctx, current: dict[str, Any], body: Body) -> dict[str, Any]:
    f = Fields(body)
    changes: dict[str, Any] = {}
    status = f.choice("status", "Status", records.INVOICE_STATUSES)
    assigned = _lookup(
        ctx, f, "assignedUserId", "Assigned user", "user", f.id("assignedUserId", "Assigned user")
    )
    contract_id = f.id("contractId", "Contract")
    for key, value in (
        ("name", f.text("name", "Name", max_len=255)),
        ("invoiceNumber", f.text("invoiceNumber", "Invoice number")),
        ("refNumber", f.text("refNumber", "Reference number")),
        ("customerPo", f.text("customerPo", "Customer PO", max_len=40)),
        ("notes", f.text("notes", "Notes")),
        ("partial", f.boolean("partial", "Partial")),
        ("transactionDate", f.unix("transactionDate", "Transaction date")),
        ("dueDate", f.unix("dueDate", "Due date")),
    ):
        _set(changes, key, value, f)
    _common_updates(f, changes)
    f.check()
    if status is not None:
        old = str(current.get("status"))
        if not assumptions.invoice_transition_allowed(old, status):
            raise invalid("status", f"Invoice status cannot change from {old} to {status}")
        changes["status"] = status
    if assigned is not None:
        changes["assignedUser"] = _ref("user", assigned)
    if contract_id is not None:
        contract = _check_contract(
            ctx, contract_id, ref_id(current, "customer"), ref_id(current, "location")
        )
        changes["contract"] = _ref("contract", contract)
    return ctx.state.patch("invoice", current["id"], changes, user_id=ctx.user_id)


def invoice_filters(ctx: Ctx, q: Query) -> list[Predicate]:
    preds: list[Predicate] = []
    statuses = q.choices("status", (*records.INVOICE_STATUSES, "all"))
    if statuses and "all" not in statuses:
        preds.append(lambda r: r.get("status") in statuses)
    types = q.choices("type", records.INVOICE_TYPES)
    if types:
        preds.append(lambda r: r.get("type") in types)
    for param, field in (
        ("jobId", "job"),
        ("customerId", "customer"),
        ("locationId", "location"),
        ("contractId", "contract"),
        ("assignedUserId", "assignedUser"),
    ):
        wanted = q.ids(param)
        if wanted:
            preds.append(_ref_in(field, wanted))
    partial = q.boolean("partial")
    if partial is not None:
        preds.append(lambda r: bool(r.get("partial")) is partial)
    paid = q.boolean("paid")
    if paid is not None:
        preds.append(lambda r: bool(r.get("isPaid")) is paid)
    tags = q.text("tag")
    if tags:
        needed = {t.strip() for t in tags.split(",") if t.strip()}
        preds.append(lambda r: needed <= _tag_names(r))
    pred = _range(q, "transactionDate", "transactionDateAfter", "transactionDateBefore")
    if pred is not None:
        preds.append(pred)
    return preds


def invoice_sort(q: Query) -> tuple[Callable[[Mapping[str, Any]], Any], bool]:
    """§5.5: ``sort`` name|transactionDate (default name), ``sortOrder`` asc|desc; ties by id."""
    sort = q.text("sort") or "name"
    if sort not in ("name", "transactionDate"):
        q.errors["sort"] = "sort must be name or transactionDate"
    order = (q.text("sortOrder") or "asc").lower()
    if order not in ("asc", "desc"):
        q.errors["sortOrder"] = "sortOrder must be asc or desc"
    if sort == "transactionDate":
        return (lambda r: (r.get("transactionDate") or 0, r["id"])), order == "desc"
    return (lambda r: (str(r.get("name") or "").lower(), r["id"])), order == "desc"


# --- library items, service lines, contracts, users ---------------------------------------------
def _libitem_fields(ctx: Ctx, body: Body, creating: bool) -> dict[str, Any]:
    f = Fields(body)
    out: dict[str, Any] = {}
    line = _lookup(
        ctx,
        f,
        "serviceLineId",
        "Service line",
        "serviceline",
        f.id("serviceLineId", "Service line"),
    )
    for key, value in (
        ("name", f.text("name", "Name", required=creating, max_len=255)),
        ("code", f.text("code", "Code")),
        ("type", f.text("type", "Type")),
        ("isGeneric", f.boolean("isGeneric", "Is generic")),
        ("price", _num(f.number("price", "Price"))),
        ("cost", _num(f.number("cost", "Cost"))),
    ):
        if value is not None or (not creating and f.has(key)):
            out[key] = value
    if line is not None:
        out["serviceLine"] = _ref("serviceline", line)
    if creating:
        out.setdefault("type", "part")
        out.setdefault("isGeneric", False)
        out["externalIds"] = _externals_for_create(f)
    else:
        _common_updates(f, out)
    f.check()
    return out


def create_libitem(ctx: Ctx, body: Body) -> dict[str, Any]:
    return ctx.state.insert("libitem", _libitem_fields(ctx, body, True), user_id=ctx.user_id)


def update_libitem(ctx: Ctx, current: dict[str, Any], body: Body) -> dict[str, Any]:
    changes = _libitem_fields(ctx, body, False)
    return ctx.state.patch("libitem", current["id"], changes, user_id=ctx.user_id)


def libitem_filters(ctx: Ctx, q: Query) -> list[Predicate]:
    preds: list[Predicate] = []
    name = q.text("name")
    if name:
        preds.append(lambda r: contains_ci(r.get("name"), name))
    code = q.text("code")
    if code:
        preds.append(lambda r: r.get("code") == code)
    types = q.text("type")
    if types:
        wanted = {t.strip() for t in types.split(",")}
        preds.append(lambda r: r.get("type") in wanted)
    return preds


def serviceline_filters(ctx: Ctx, q: Query) -> list[Predicate]:
    preds: list[Predicate] = []
    name = q.text("name")
    if name:
        preds.append(lambda r: contains_ci(r.get("name"), name))
    abbr = q.text("abbr")
    if abbr:
        preds.append(lambda r: r.get("abbr") == abbr)
    return preds


def contract_filters(ctx: Ctx, q: Query) -> list[Predicate]:
    preds: list[Predicate] = []
    name = q.text("name")
    if name:
        preds.append(lambda r: contains_ci(r.get("name"), name))
    active = q.boolean("active")
    if active is not None:
        preds.append(lambda r: (r.get("active") is not False) is active)
    customers = q.ids("customerId")
    if customers:
        preds.append(lambda r: ref_id(r, "customer") in customers)
    location = q.id("locationId")
    if location is not None:
        preds.append(
            lambda r: any(
                isinstance(x, Mapping) and x.get("id") == location for x in r.get("locations") or []
            )
        )
    return preds


def user_filters(ctx: Ctx, q: Query) -> list[Predicate]:
    preds: list[Predicate] = []
    name = q.text("name")
    if name:
        preds.append(
            lambda r: (
                contains_ci(r.get("name"), name)
                or contains_ci(f"{r.get('firstName') or ''} {r.get('lastName') or ''}", name)
            )
        )
    email = q.text("email")
    if email:
        preds.append(lambda r: str(r.get("email") or "").lower() == email.lower())
    status = q.text("status")
    if status:
        wanted = {s.strip() for s in status.split(",")}
        preds.append(lambda r: r.get("status") in wanted)
    return preds


# --- job items ----------------------------------------------------------------------------------
def _jobitem_fields(ctx: Ctx, body: Body, creating: bool) -> dict[str, Any]:
    f = Fields(body)
    out: dict[str, Any] = {}
    job = _lookup(ctx, f, "jobId", "Job", "job", f.id("jobId", "Job", required=creating))
    lib_key = "libitemId" if f.has("libitemId") else "libItemId"
    lib = _lookup(ctx, f, lib_key, "Library item", "libitem", f.id(lib_key, "Library item"))
    line = _lookup(
        ctx,
        f,
        "serviceLineId",
        "Service line",
        "serviceline",
        f.id("serviceLineId", "Service line"),
    )
    vendor = _lookup(ctx, f, "vendorId", "Vendor", "company", f.id("vendorId", "Vendor"))
    name = f.text("name", "Name", max_len=255)
    description = f.text("description", "Description")
    if creating and name is None and description is None and lib is None:
        f.fail("name", "Name is required")
    for key, value in (
        ("name", name),
        ("description", description),
        ("quantity", _num(f.number("quantity", "Quantity"))),
        ("cost", _num(f.number("cost", "Cost"))),
        ("price", _num(f.number("price", "Price"))),
        ("usedOn", f.unix("usedOn", "Used on")),
    ):
        if value is not None or (not creating and f.has(key)):
            out[key] = value
    source = f.mapping("source", "Source")
    external_ids = f.external_ids()
    if source is not None:
        s_type, s_value = source.get("type"), source.get("value")
        if not isinstance(s_type, str) or not s_type or not isinstance(s_value, str | int):
            f.fail("source", 'Source must be {"type": text, "value": text}')
        else:
            out["source"] = {"type": s_type, "value": str(s_value)}
    elif not creating and f.has("source"):
        out["source"] = None
    f.check()
    if job is not None:
        out["job"] = _ref("job", job)
    if lib is not None:
        out["libItem"] = _ref("libitem", lib)
        if "name" not in out and creating:
            out["name"] = lib.get("name")
        if line is None and creating and isinstance(lib.get("serviceLine"), Mapping):
            line = ctx.state.peek("serviceline", lib["serviceLine"].get("id"))
    if line is not None:
        out["serviceLine"] = _ref("serviceline", line)
    if vendor is not None:
        out["vendor"] = _ref("company", vendor)
    if creating:
        out.setdefault("name", out.get("description"))
        out.setdefault("quantity", 1)
        out.setdefault("cost", None)
        out.setdefault("usedOn", None)
        for key in ("libItem", "serviceLine", "vendor", "source"):
            out.setdefault(key, None)
        out["externalIds"] = merge_external_ids({}, external_ids or {})
    elif external_ids is not None:
        out["externalIds"] = external_ids
    return out


def create_jobitem(ctx: Ctx, body: Body) -> dict[str, Any]:
    return ctx.state.insert("jobitem", _jobitem_fields(ctx, body, True), user_id=ctx.user_id)


def update_jobitem(ctx: Ctx, current: dict[str, Any], body: Body) -> dict[str, Any]:
    changes = _jobitem_fields(ctx, body, False)
    return ctx.state.patch("jobitem", current["id"], changes, user_id=ctx.user_id)


def jobitem_filters(ctx: Ctx, q: Query) -> list[Predicate]:
    preds: list[Predicate] = []
    jobs = q.ids("jobId")
    if jobs:
        preds.append(lambda r: ref_id(r, "job") in jobs)
    pred = _range(q, "usedOn", "usedOnAfter", "usedOnBefore")
    if pred is not None:
        preds.append(pred)
    lib_type = q.text("libItemType")
    if lib_type:
        wanted = {t.strip() for t in lib_type.split(",")}
        preds.append(lambda r: (r.get("libItem") or {}).get("type") in wanted)
    offices = q.ids("jobOfficeId")
    if offices:
        state = ctx.state

        def in_office(r: Mapping[str, Any]) -> bool:
            job = state.peek("job", ref_id(r, "job"))
            return job is not None and ref_id(job, "assignedOffice") in offices

        preds.append(in_office)
    return preds


# --- comments and tags --------------------------------------------------------------------------
_TARGETS = assumptions.COMMENT_TARGETS


def _target(ctx: Ctx, f: Fields, required: bool) -> tuple[int, dict[str, Any]] | None:
    """``entityType`` + ``entityId`` of a comment/tag body → (type number, stored record)."""
    raw_type = f.body.get("entityType")
    entity_id = f.id("entityId", "Entity id", required=required)
    if raw_type is None:
        if required:
            f.fail("entityType", "Entity type is required")
        elif entity_id is not None:
            f.fail("entityType", "Entity type is required with an entity id")
        return None
    number = entity_type_number(raw_type)
    resource = records.ENTITY_TYPE_NAMES.get(number) if number is not None else None
    if resource not in _TARGETS:
        f.fail("entityType", f"Entity type {raw_type!r} is not supported")
        return None
    if entity_id is None:
        if not required:
            f.fail("entityId", "Entity id is required with an entity type")
        return None
    assert resource is not None
    rec = _lookup(ctx, f, "entityId", resource.title(), resource, entity_id)
    if rec is None or number is None:
        return None
    return number, rec


def create_comment(ctx: Ctx, body: Body) -> dict[str, Any]:
    f = Fields(body)
    target = _target(ctx, f, required=True)
    content = f.text("content", "Content", required=True)
    visibility = f.text_list("visibility", "Visibility", records.COMMENT_VISIBILITY)
    f.check()
    assert target is not None
    author = ctx.state.peek("user", ctx.user_id) if ctx.user_id is not None else None
    rec = {
        "entityType": target[0],
        "entityId": target[1]["id"],
        "content": content,
        "visibility": visibility or ["public"],
        "author": _ref("user", author),
    }
    return ctx.state.insert("comment", rec, user_id=ctx.user_id)


def comment_filters(ctx: Ctx, q: Query) -> list[Predicate]:
    preds: list[Predicate] = []
    raw_type = q.text("entityType")
    if raw_type is not None:
        number = entity_type_number(raw_type)
        if number is None:
            q.errors["entityType"] = f"entityType {raw_type!r} is unknown"
        preds.append(lambda r: r.get("entityType") == number)
    ids = q.ids("entityId")
    if ids:
        preds.append(lambda r: r.get("entityId") in ids)
    return preds


def _resource_of_type(number: int) -> str | None:
    return records.ENTITY_TYPE_NAMES.get(number)


def create_tag(ctx: Ctx, body: Body) -> dict[str, Any]:
    """§5.9: create-or-return the tag by name (or id) and attach it to the entity, when given."""
    f = Fields(body)
    tag_id = f.id("id", "Tag")
    name = f.text("name", "Name", required=tag_id is None, max_len=255)
    target = _target(ctx, f, required=False)
    f.check()
    tag: dict[str, Any] | None
    if tag_id is not None:
        tag = ctx.state.peek("tag", tag_id)
        if tag is None:
            raise invalid("id", f"Tag {tag_id} not found")
    else:
        tag = next((t for t in ctx.state.scan("tag") if t.get("name") == name), None)
        if tag is None:
            tag = ctx.state.insert("tag", {"name": name}, user_id=ctx.user_id)
    if target is not None:
        number, entity = target
        resource = _resource_of_type(number)
        assert resource is not None
        tags = [t for t in entity.get("tags") or [] if isinstance(t, Mapping)]
        if all(t.get("id") != tag["id"] for t in tags):
            ctx.state.patch(
                resource,
                entity["id"],
                {"tags": [*tags, {"id": tag["id"], "name": tag.get("name")}]},
                user_id=ctx.user_id,
            )
    return tag


def update_tag(ctx: Ctx, current: dict[str, Any], body: Body) -> dict[str, Any]:
    f = Fields(body)
    name = f.text("name", "Name", required=True, max_len=255)
    f.check()
    return ctx.state.patch("tag", current["id"], {"name": name}, user_id=ctx.user_id)


def delete_tag(ctx: Ctx, current: dict[str, Any]) -> None:
    for resource in _TARGETS:
        for rec in list(ctx.state.scan(resource)):
            tags = rec.get("tags") or []
            if any(isinstance(t, Mapping) and t.get("id") == current["id"] for t in tags):
                kept = [
                    t for t in tags if not (isinstance(t, Mapping) and t.get("id") == current["id"])
                ]
                ctx.state.patch(resource, rec["id"], {"tags": kept}, user_id=ctx.user_id)
    ctx.state.remove("tag", current["id"], user_id=ctx.user_id)


def tag_filters(ctx: Ctx, q: Query) -> list[Predicate]:
    preds: list[Predicate] = []
    name = q.text("name")
    if name:
        preds.append(lambda r: r.get("name") == name)
    raw_type = q.text("entityType")
    entity_id = q.id("entityId")
    if raw_type is not None and entity_id is not None:
        number = entity_type_number(raw_type)
        resource = _resource_of_type(number) if number is not None else None
        entity = ctx.state.peek(resource, entity_id) if resource in _TARGETS and resource else None
        ids = {t.get("id") for t in (entity or {}).get("tags") or [] if isinstance(t, Mapping)}
        preds.append(lambda r: r["id"] in ids)
    return preds


# --- webhooks -----------------------------------------------------------------------------------
def _entity_events(f: Fields, required: bool) -> list[dict[str, Any]] | None:
    raw = f.body.get("entityEvents")
    if raw is None:
        if required:
            f.fail("entityEvents", "Entity events are required")
        return None
    if not isinstance(raw, list) or not raw:
        f.fail("entityEvents", "Entity events must be a non-empty list")
        return None
    out: list[dict[str, Any]] = []
    for index, item in enumerate(raw):
        key = f"entityEvents[{index}]"
        if not isinstance(item, Mapping):
            f.fail(key, f"{key} must be an object")
            continue
        number = entity_type_number(item.get("entityType"))
        if number is None:
            f.fail(f"{key}.entityType", f"{key}: unknown entityType {item.get('entityType')!r}")
            continue
        actions: Any = None
        for action_key in assumptions.WEBHOOK_ACTION_KEYS:
            if item.get(action_key) is not None:
                actions = item[action_key]
                break
        if isinstance(actions, str):
            actions = [a.strip() for a in actions.split(",") if a.strip()]
        if (
            not isinstance(actions, list)
            or not actions
            or any(a not in records.WEBHOOK_ACTIONS for a in actions)
        ):
            f.fail(
                f"{key}.actions",
                f"{key}: actions must be a non-empty list of {', '.join(records.WEBHOOK_ACTIONS)}",
            )
            continue
        out.append({"entityType": number, "actions": list(dict.fromkeys(actions))})
    return out


def _hook_url(f: Fields, required: bool) -> str | None:
    url = f.text("hookUrl", "Hook URL", required=required, max_len=2048)
    if url is not None and not url.startswith(("http://", "https://")):
        f.fail("hookUrl", "Hook URL must be an http(s) URL")
        return None
    return url


def create_webhook(ctx: Ctx, body: Body) -> dict[str, Any]:
    f = Fields(body)
    url = _hook_url(f, True)
    enabled = f.boolean("enabled", "Enabled")
    changesets = f.boolean("includeChangesets", "Include changesets")
    events = _entity_events(f, True)
    f.check()
    rec = {
        "hookUrl": url,
        "enabled": True if enabled is None else enabled,
        "confirmed": assumptions.WEBHOOK_CONFIRMED,
        "includeChangesets": bool(changesets),
        "entityEvents": events,
    }
    return ctx.state.insert("webhook", rec, user_id=ctx.user_id)


def update_webhook(ctx: Ctx, current: dict[str, Any], body: Body) -> dict[str, Any]:
    f = Fields(body)
    url = _hook_url(f, False)
    enabled = f.boolean("enabled", "Enabled")
    changesets = f.boolean("includeChangesets", "Include changesets")
    events = _entity_events(f, False)
    if assumptions.WEBHOOK_HOOK_URL_IMMUTABLE and url is not None and url != current.get("hookUrl"):
        f.fail("hookUrl", "Hook URL cannot be changed; delete the webhook and create a new one")
    f.check()
    changes: dict[str, Any] = {}
    if enabled is not None:
        changes["enabled"] = enabled
    if changesets is not None:
        changes["includeChangesets"] = changesets
    if events is not None:
        changes["entityEvents"] = events
    return ctx.state.patch("webhook", current["id"], changes, user_id=ctx.user_id)


# --- timecards and clock events -----------------------------------------------------------------
def update_timecard(ctx: Ctx, current: dict[str, Any], body: Body) -> dict[str, Any]:
    """``PUT /timecard/{id}``: change ``status`` (and optionally ``approvedOn``/``entries``)."""
    f = Fields(body)
    status = f.choice("status", "Status", assumptions.TIMECARD_STATUSES)
    approved_on = f.unix("approvedOn", "Approved on")
    entries = body.get("entries")
    if entries is not None and not (
        isinstance(entries, list) and all(isinstance(e, Mapping) for e in entries)
    ):
        f.fail("entries", "Entries must be a list of objects")
    f.check()
    changes: dict[str, Any] = {}
    if status is not None:
        changes["status"] = status
    if approved_on is not None:
        changes["approvedOn"] = approved_on
    if isinstance(entries, list):
        changes["entries"] = [
            {**e, "id": e.get("id") or ctx.state.new_id()}
            for e in entries
            if isinstance(e, Mapping)
        ]
    return ctx.state.patch("timecard", current["id"], changes, user_id=ctx.user_id)


def timecard_filters(ctx: Ctx, q: Query) -> list[Predicate]:
    preds: list[Predicate] = []
    statuses = q.choices("status", assumptions.TIMECARD_STATUSES)
    if statuses:
        preds.append(lambda r: r.get("status") in statuses)
    pred = _range(q, "approvedOn", "approvedAfter", "approvedBefore")
    if pred is not None:
        preds.append(pred)
    users = q.ids("userId")
    if users:
        preds.append(lambda r: ref_id(r, "user") in users)
    pred = _range(q, "workDate", "workDateAfter", "workDateBefore")
    if pred is not None:
        preds.append(pred)
    return preds


def clock_filters(ctx: Ctx, q: Query) -> list[Predicate]:
    preds: list[Predicate] = []
    users = (q.ids("userId") or set()) | (q.ids("userIds") or set())
    if users:
        preds.append(lambda r: ref_id(r, "user") in users)
    jobs = q.ids("jobId")
    if jobs:
        preds.append(lambda r: ref_id(r, "job") in jobs)
    appointments = q.ids("appointmentId")
    if appointments:
        preds.append(lambda r: ref_id(r, "appointment") in appointments)
    activities = q.choices("activity", records.CLOCK_ACTIVITIES)
    if activities:
        preds.append(lambda r: r.get("activity") in activities)
    sources = q.choices("source", records.CLOCK_SOURCES)
    if sources:
        preds.append(lambda r: r.get("source") in sources)
    pred = _range(q, "eventTime", "startTime", "endTime")
    if pred is not None:
        preds.append(pred)
    return preds


# --- the table ----------------------------------------------------------------------------------
_ALL = frozenset({"list", "get", "create", "update", "delete"})
_READ = frozenset({"list", "get"})

SPECS: dict[str, Spec] = {
    "company": Spec(
        "company", "Company", _ALL, create_company, update_company, None, company_filters
    ),
    "location": Spec(
        "location", "Location", _ALL, create_location, update_location, None, location_filters
    ),
    "job": Spec("job", "Job", _ALL, create_job, update_job, None, job_filters),
    "invoice": Spec(
        "invoice",
        "Invoice",
        _ALL,
        create_invoice,
        update_invoice,
        None,
        invoice_filters,
        invoice_sort,
    ),
    "user": Spec("user", "User", _READ, filters=user_filters),
    "serviceline": Spec("serviceline", "Service line", _READ, filters=serviceline_filters),
    "contract": Spec("contract", "Contract", _READ, filters=contract_filters),
    "libitem": Spec(
        "libitem", "Library item", _ALL, create_libitem, update_libitem, None, libitem_filters
    ),
    "jobitem": Spec(
        "jobitem", "Job item", _ALL, create_jobitem, update_jobitem, None, jobitem_filters
    ),
    "comment": Spec(
        "comment",
        "Comment",
        frozenset({"list", "get", "create"}),
        create_comment,
        filters=comment_filters,
    ),
    "tag": Spec("tag", "Tag", _ALL, create_tag, update_tag, delete_tag, tag_filters),
    "webhook": Spec("webhook", "Webhook", _ALL, create_webhook, update_webhook),
    "timecard": Spec(
        "timecard",
        "Timecard",
        frozenset({"list", "get", "update"}),
        update=update_timecard,
        filters=timecard_filters,
    ),
    "clockevent": Spec("clockevent", "Clock event", _READ, filters=clock_filters),
}


# --- generic operations -------------------------------------------------------------------------
def _common_filters(q: Query) -> list[Predicate]:
    preds: list[Predicate] = []
    for field, after, before in (
        ("created", "createdAfter", "createdBefore"),
        ("updated", "updatedAfter", "updatedBefore"),
    ):
        pred = _range(q, field, after, before)
        if pred is not None:
            preds.append(pred)
    return preds


def list_records(ctx: Ctx, spec: Spec, params: Mapping[str, str]) -> dict[str, Any]:
    """``GET /<resource>``: filters, sort, then ``page``/``limit`` →
    ``{<plural>: [...], "page", "totalPages"}``."""
    q = Query(params)
    default_limit, max_limit = assumptions.page_limits(spec.resource)
    page = q.integer("page", minimum=1) or 1
    limit = q.integer("limit", minimum=1) or default_limit
    limit = min(limit, max_limit)
    preds = _common_filters(q)
    if spec.filters is not None:
        preds.extend(spec.filters(ctx, q))
    sort = spec.sort(q) if spec.sort is not None else None
    q.check()
    matched = [r for r in ctx.state.scan(spec.resource) if all(p(r) for p in preds)]
    if sort is not None:
        key, reverse = sort
        matched.sort(key=key, reverse=reverse)
    total_pages = math.ceil(len(matched) / limit) if matched else 0
    start = (page - 1) * limit
    window = matched[start : start + limit]
    return {
        records.PLURAL_KEYS[spec.resource]: [ctx.state.render(spec.resource, r) for r in window],
        "page": page,
        "totalPages": total_pages,
    }


def fetch(ctx: Ctx, spec: Spec, id_text: str) -> dict[str, Any]:
    """The stored record named by a path id, or 404."""
    id_ = parse_id(id_text)
    rec = ctx.state.peek(spec.resource, id_) if id_ is not None else None
    if rec is None:
        raise not_found()
    return rec


# --- external ids (§6) ----------------------------------------------------------------------------
def external_resource(segment: str) -> str:
    """``{entityType}`` of an ``/externalid`` path (name or number) → resource, or 404."""
    number = entity_type_number(segment)
    name = records.ENTITY_TYPE_NAMES.get(number) if number is not None else None
    if name is None and segment.lower() in records.PLURAL_KEYS:
        name = segment.lower()
    if name not in assumptions.EXTERNAL_ID_ENTITY_TYPES:
        raise ApiError(404, [f"Entity type {segment!r} does not support external ids"])
    assert name is not None
    return name


def external_values(ctx: Ctx, resource: str, id_text: str) -> dict[str, Any]:
    rec = fetch(ctx, SPECS_FOR_EXTERNAL[resource], id_text)
    return {"values": dict(rec.get("externalIds") or {})}


def external_value(ctx: Ctx, resource: str, id_text: str, system: str) -> dict[str, Any]:
    rec = fetch(ctx, SPECS_FOR_EXTERNAL[resource], id_text)
    value = (rec.get("externalIds") or {}).get(system)
    if value is None:
        raise not_found()
    return {"value": value}


def external_lookup(ctx: Ctx, resource: str, system: str, value: str) -> dict[str, Any]:
    for rec in ctx.state.scan(resource):
        if (rec.get("externalIds") or {}).get(system) == value:
            return ctx.state.render(resource, rec)
    raise not_found()


def external_set(ctx: Ctx, resource: str, id_text: str, system: str, body: Body) -> dict[str, Any]:
    rec = fetch(ctx, SPECS_FOR_EXTERNAL[resource], id_text)
    if "value" not in body:
        raise invalid("value", "Value is required")
    value = body.get("value")
    if value is not None and (isinstance(value, bool) or not isinstance(value, str | int)):
        raise invalid("value", "Value must be text")
    text = "" if value is None else str(value)
    ctx.state.patch(resource, rec["id"], {"externalIds": {system: text}}, user_id=ctx.user_id)
    return {"value": text if text != assumptions.EXTERNAL_ID_REMOVE_VALUE else None}


SPECS_FOR_EXTERNAL: dict[str, Spec] = {
    r: SPECS[r] for r in assumptions.EXTERNAL_ID_ENTITY_TYPES if r in SPECS
}
