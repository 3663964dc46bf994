"""Put services: the business rules of each write and the rows it leaves in Info-Link.

Each handler receives the record's clean values (layout already checked) and a ``Checks`` for the
company. It adds its rule violations to ``checks``; when there are none it writes, inside the
caller's transaction, and returns the extra message rows (``G`` for an auto-assigned number).
Rules follow reference §6–§7; uncertain points are in ``assumptions.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Table

from clients.spectrum import infolink_schema as il
from clients.spectrum.formats import parse_date, parse_number
from clients.spectrum.services import AR_MULTI_LINE_DETAIL, SERVICES
from sandbox.spectrum import assumptions as assume
from sandbox.spectrum.db import insert_rows, merge_extras, update_rows
from sandbox.spectrum.soap import Row
from sandbox.spectrum.validation import Checks

Values = Mapping[str, str]
PutHandler = Callable[[Checks, Values], list[Row]]

#: Built-in Spectrum pay types accepted besides the company's PR_PAY_TYPE_MC rows (reference §6;
#: ``I*`` = any code starting with I).
BUILTIN_PAY_TYPES = frozenset(
    {
        "R",
        "O",
        "D",
        "H",
        "V",
        "S",
        "M",
        "SA",
        "ER",
        "EO",
        "ED",
        "EU",
        "RP",
        "JX",
        "1",
        "2",
        "3",
        "Q",
        "U",
    }
)


def _columns(
    table: Table, values: Values, *, rename: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The non-blank ``values`` that ``table`` has columns for, typed per column."""
    out: dict[str, Any] = {}
    rename = rename or {}
    for name, value in values.items():
        col_name = rename.get(name, name)
        if value == "" or col_name == "Company_Code" or col_name not in table.c:
            continue
        col_type = table.c[col_name].type
        if isinstance(col_type, sa.Date):
            out[col_name] = parse_date(value)
        elif isinstance(col_type, sa.Numeric):
            out[col_name] = parse_number(value)
        else:
            out[col_name] = value
    return out


def _extras(
    table: Table, values: Values, rename: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Layout values without an Info-Link column (kept in the sandbox's extras table)."""
    rename = rename or {}
    return {
        k: v
        for k, v in values.items()
        if v != "" and rename.get(k, k) not in table.c and k != "Company_Code"
    }


def _key(ck: Checks, **key: str) -> dict[str, str]:
    """A record's key in the company (the where clause of ``update_rows``)."""
    return {"Company_Code": ck.company, **key}


# --- AR customers and WO sites --------------------------------------------------------------------


def add_customer(ck: Checks, v: Values) -> list[Row]:
    ck.ref("Terms_Code", v["Terms_Code"], il.terms, what="terms code")
    ck.ref("Sales_Tax_Code", v["Sales_Tax_Code"], il.sales_tax_codes, what="sales tax code")
    ck.ref(
        "Salesperson",
        v["Salesperson"],
        il.salespersons,
        table_column="Salesperson_Code",
        what="salesperson",
    )
    ck.ref("Cost_Center", v["Cost_Center"], il.cost_centers, what="cost center")
    ck.unique("Customer_Code", v["Customer_Code"], il.customers)
    if ck.rows:
        return []
    row = _columns(il.customers, v)
    row.update(Company_Code=ck.company, Status="A", Date_Created=ck.admin.today())
    ck.conn.execute(il.customers.insert(), row)
    merge_extras(
        ck.conn, il.customers.name, ck.company, v["Customer_Code"], _extras(il.customers, v)
    )
    return []


def add_wo_site_address(ck: Checks, v: Values) -> list[Row]:
    customer = ck.ref_row(
        "Site_Customer_Code",
        v["Site_Customer_Code"],
        il.customers,
        table_column="Customer_Code",
        what="customer",
    )
    ck.ref("Sales_Tax_Code", v["Sales_Tax_Code"], il.sales_tax_codes, what="sales tax code")
    ck.ref("Cost_Center", v["Cost_Center"], il.cost_centers, what="cost center")
    ck.unique("Site_ID", v["Site_ID"], il.sites)
    if ck.rows:
        return []
    row = _columns(il.sites, v)
    if not v["Sales_Tax_Code"] and customer and customer.get("Sales_Tax_Code"):
        row["Sales_Tax_Code"] = customer["Sales_Tax_Code"]  # defaults from the customer (§6)
    row.update(Company_Code=ck.company, Status="A")
    ck.conn.execute(il.sites.insert(), row)
    merge_extras(ck.conn, il.sites.name, ck.company, v["Site_ID"], _extras(il.sites, v))
    return []


# --- jobs and phases ------------------------------------------------------------------------------


def _job_refs(ck: Checks, v: Values) -> None:
    ck.ref("Customer_Code", v["Customer_Code"], il.customers, what="customer")
    ck.ref("Job_Type", v["Job_Type"], il.job_types, what="job type")
    # JC tax class or AR sales tax code, depending on the install (§6): either is accepted.
    tax_class = v["Tax_Class_Code"]
    if (
        tax_class
        and ck.ok("Tax_Class_Code")
        and not ck.exists(il.tax_classes, Tax_Class_Code=tax_class)
        and not ck.exists(il.sales_tax_codes, Sales_Tax_Code=tax_class)
    ):
        ck.add(
            "I",
            "Tax_Class_Code",
            f"Tax_Class_Code is invalid, tax class {tax_class} is not on file",
        )
    ck.ref("WO_Site", v["WO_Site"], il.sites, table_column="Site_ID", what="WO site")
    ck.ref("Cost_Center", v["Cost_Center"], il.cost_centers, what="cost center")


def _existing_job(ck: Checks, job_number: str) -> dict[str, Any] | None:
    if not job_number or not ck.ok("Job_Number"):
        return None
    job = ck.find(il.jobs, Job_Number=job_number)
    if job is None:
        ck.add("I", "Job_Number", f"Job_Number is invalid, job {job_number} is not on file")
    return job


def add_job(ck: Checks, v: Values) -> list[Row]:
    _job_refs(ck, v)
    ck.unique("Job_Number", v["Job_Number"], il.jobs)
    if ck.rows:
        return []
    row = _columns(il.jobs, v)
    row.setdefault("Status_Code", "A")
    row["Company_Code"] = ck.company
    ck.conn.execute(il.jobs.insert(), row)
    return []


def update_job(ck: Checks, v: Values) -> list[Row]:
    job = _existing_job(ck, v["Job_Number"])
    _job_refs(ck, v)
    if (
        job is not None
        and v["Customer_Code"]
        and job.get("Customer_Code")
        and v["Customer_Code"] != job["Customer_Code"]
        and ck.ok("Customer_Code")
    ):
        ck.add(
            "I",
            "Customer_Code",
            "Customer_Code is invalid, the job's existing AR contract cannot be changed",
        )
    if ck.rows or job is None:
        return []
    changes = _columns(il.jobs, v)
    changes.pop("Job_Number", None)
    if changes:  # blank elements leave data unchanged (§7.3)
        update_rows(ck.conn, il.jobs, _key(ck, Job_Number=v["Job_Number"]), changes)
    return []


def update_job_udf(ck: Checks, v: Values) -> list[Row]:
    job = _existing_job(ck, v["Job_Number"])
    if ck.rows or job is None:
        return []
    if v["UDF1"]:
        update_rows(ck.conn, il.jobs, _key(ck, Job_Number=v["Job_Number"]), {"UDF1": v["UDF1"]})
    others = {k: val for k, val in v.items() if k.startswith("UDF") and k != "UDF1"}
    merge_extras(ck.conn, il.jobs.name, ck.company, v["Job_Number"], others)
    return []


_PHASE_RENAME = {"Phase_Cost_Center": "Cost_Center"}


def add_phase(ck: Checks, v: Values) -> list[Row]:
    """Add a phase/cost type, or update an existing one (blank never overwrites)."""
    job_number, phase, cost_type = v["Job_Number"], v["Phase_Code"], v["Cost_Type"]
    job = _existing_job(ck, job_number)
    if job is not None and job.get("Status_Code") == "C":
        ck.add("I", "Job_Number", f"Job_Number is invalid, job {job_number} is Complete")
    if phase and ck.ok("Phase_Code") and "-" in phase:
        ck.add("I", "Phase_Code", "Phase_Code is invalid, dashes are not allowed")
    ck.ref("Cost_Type", cost_type, il.cost_types, what="cost type")
    ck.ref(
        "Phase_Cost_Center",
        v["Phase_Cost_Center"],
        il.cost_centers,
        table_column="Cost_Center",
        what="cost center",
    )
    same_phase = (
        ck.find(il.phases, Job_Number=job_number, Phase_Code=phase) if job is not None else None
    )
    if same_phase is None and not v["Description"] and ck.ok("Description"):
        ck.add("M", "Description", "Description is required for a new phase")
    if ck.rows or job is None:
        return []
    values = dict(v)
    if values["Price_Method_Code"] == "J":
        values["Price_Method_Code"] = job.get("Price_Method_Code") or ""
    changes = _columns(il.phases, values, rename=_PHASE_RENAME)
    for key in ("Job_Number", "Phase_Code", "Cost_Type"):
        changes.pop(key, None)
    combo = _key(ck, Job_Number=job_number, Phase_Code=phase, Cost_Type=cost_type)
    existing = ck.find(il.phases, Job_Number=job_number, Phase_Code=phase, Cost_Type=cost_type)
    description = changes.pop("Description", None)
    if existing is None:
        if same_phase is not None:  # the phase's first description wins on add (§6)
            description = same_phase.get("Description")
        changes.setdefault("Status_Code", "A")
        ck.conn.execute(
            il.phases.insert(),
            {
                "Company_Code": ck.company,
                "Job_Number": job_number,
                "Phase_Code": phase,
                "Cost_Type": cost_type,
                "Description": description,
                **changes,
            },
        )
        return []
    if changes:
        update_rows(ck.conn, il.phases, combo, changes)
    if description is not None and description != existing["Description"]:
        # a changed description on an existing combo updates every cost type of the phase (§6)
        update_rows(
            ck.conn,
            il.phases,
            _key(ck, Job_Number=job_number, Phase_Code=phase),
            {"Description": description},
        )
    return []


# --- work orders ----------------------------------------------------------------------------------


def _next_wo_number(conn: Connection, company: str) -> str:
    numbers = conn.execute(
        sa.select(il.work_orders.c.WO_Number).where(il.work_orders.c.Company_Code == company)
    ).scalars()
    highest = max((int(n.strip()) for n in numbers if n and n.strip().isdigit()), default=None)
    return str(assume.WO_FIRST_NUMBER if highest is None else highest + 1)


def work_order_header(ck: Checks, v: Values) -> list[Row]:
    """Add a work order (blank WO_Number: the next number, returned as a ``G`` row) or update an
    existing one; blank fields never overwrite (§6)."""
    number = v["WO_Number"]
    existing = ck.find(il.work_orders, WO_Number=number) if number else None
    ref_code, target = v["WO_Reference_Code"], v["WO_Job_Number"]
    if target and ck.ok("WO_Job_Number") and ck.ok("WO_Reference_Code"):
        if ref_code == "S":
            ck.ref("WO_Job_Number", target, il.sites, table_column="Site_ID", what="WO site")
        elif ref_code == "J":
            ck.ref("WO_Job_Number", target, il.jobs, table_column="Job_Number", what="job")
    ck.ref(
        "Bill_Customer_Code",
        v["Bill_Customer_Code"],
        il.customers,
        table_column="Customer_Code",
        what="customer",
    )
    ck.ref("Cost_Center", v["Cost_Center"], il.cost_centers, what="cost center")
    if existing is None:
        for required in ("WO_Job_Division", "Bill_Customer_Code"):
            if not v[required] and ck.ok(required):
                ck.add("M", required, f"{required} is required for a new work order")
    if ck.rows:
        return []
    changes = _columns(il.work_orders, v)
    changes.pop("WO_Number", None)
    if existing is not None:
        if changes:
            update_rows(ck.conn, il.work_orders, _key(ck, WO_Number=number), changes)
        return []
    generated: list[Row] = []
    if not number:
        number = _next_wo_number(ck.conn, ck.company)
        generated.append((assume.GOOD_CODE, number, "WO_Number"))
    ck.conn.execute(
        il.work_orders.insert(), {"Company_Code": ck.company, "WO_Number": number, **changes}
    )
    return generated


# --- payroll --------------------------------------------------------------------------------------


def _pay_type_ok(ck: Checks, pay_type: str) -> bool:
    if pay_type in BUILTIN_PAY_TYPES or pay_type.startswith("I"):
        return True
    return ck.exists(il.pay_types, Pay_Type=pay_type)


def pre_time_card(ck: Checks, v: Values) -> list[Row]:
    """One pre-time record per call; no key, so a repeat really adds a second row (§6)."""
    ck.ref("Employee_Code", v["Employee_Code"], il.employees, what="employee")
    ck.ref("Department_Code", v["Department_Code"], il.departments, what="department")
    pay_type = v["Pay_Type"]
    if pay_type and ck.ok("Pay_Type") and not _pay_type_ok(ck, pay_type):
        ck.add("I", "Pay_Type", f"Pay_Type is invalid, pay type {pay_type} is not on file")
    if pay_type == "Q":  # quantity rows need job, phase and cost type (§6)
        for required in ("Job_Number", "Phase_Code", "Cost_Type"):
            if not v[required] and ck.ok(required):
                ck.add("M", required, f"{required} is required for pay type Q")
    job_ok = ck.ref("Job_Number", v["Job_Number"], il.jobs, what="job")
    phase, cost_type = v["Phase_Code"], v["Cost_Type"]
    if phase and ck.ok("Phase_Code"):
        if not v["Job_Number"]:
            if ck.ok("Job_Number"):
                ck.add("M", "Job_Number", "Job_Number is required with Phase_Code")
        elif job_ok:
            key = {"Job_Number": v["Job_Number"], "Phase_Code": phase}
            if cost_type:
                key["Cost_Type"] = cost_type
            if not ck.exists(il.phases, **key):
                shown = f"{phase}/{cost_type}" if cost_type else phase
                ck.add(
                    "I",
                    "Phase_Code",
                    f"Phase_Code is invalid, phase {shown} is not on job {v['Job_Number']}",
                )
    elif cost_type:
        ck.ref("Cost_Type", cost_type, il.cost_types, what="cost type")
    ck.ref("Cost_Center", v["Cost_Center"], il.cost_centers, what="cost center")
    ck.in_window("PR", "Work_Date", v["Work_Date"])
    if ck.rows:
        return []
    row = _columns(il.pre_time, v)
    row["Company_Code"] = ck.company
    ck.conn.execute(il.pre_time.insert(), row)
    return []


# --- AR invoices (SOAP AddARInvoice and the REST multi-line service share these) ------------------


def check_ar_header(ck: Checks, h: Values) -> dict[str, Any] | None:
    """Header rules; returns the customer row when it is on file."""
    customer = ck.ref_row("Customer_Code", h["Customer_Code"], il.customers, what="customer")
    ck.ref("Job_Number", h["Job_Number"], il.jobs, what="job")
    ck.ref("Terms_Code", h["Terms_Code"], il.terms, what="terms code")
    ck.ref("Salesperson_Code", h["Salesperson_Code"], il.salespersons, what="salesperson")
    ck.ref("Sales_Tax_Code", h["Sales_Tax_Code"], il.sales_tax_codes, what="sales tax code")
    ck.unique("Invoice_Or_Transaction", h["Invoice_Or_Transaction"], il.ar_invoices)
    ck.in_window("AR", "GL_Date", h["GL_Date"])
    ck.in_window("AR", "Invoice_Date", h["Invoice_Date"])
    ck.not_negative("Sales_Tax_Amount", h["Sales_Tax_Amount"])
    return customer


def check_ar_line(ck: Checks, d: Values) -> None:
    """Detail-line rules: GL account on file and non-direct (§6), cost center, positive amount."""
    gl = d.get("GL_Account", "")
    if gl and ck.ok("GL_Account"):
        account = ck.find(il.gl_accounts, GL_Account=gl)
        if account is None:
            ck.add("I", "GL_Account", f"GL_Account is invalid, GL account {gl} is not on file")
        elif (account.get("Direct_Cost_Flag") or "N") != "N":
            ck.add(
                "I",
                "GL_Account",
                f"GL_Account is invalid, {gl} is a direct cost account; "
                "invoices need a non-direct account",
            )
    ck.ref(
        "Income_Cost_Center",
        d.get("Income_Cost_Center", ""),
        il.cost_centers,
        table_column="Cost_Center",
        what="cost center",
    )
    ck.not_negative("Line_Extension", d.get("Line_Extension", ""))


_DETAIL_NAMES = frozenset(f.name for f in AR_MULTI_LINE_DETAIL)


def write_ar_invoice(
    ck: Checks, h: Values, lines: Sequence[Values], customer: Mapping[str, Any] | None
) -> None:
    """One header (Invoice_Amount = sum of line extensions) and its numbered lines."""
    header = _columns(il.ar_invoices, h)
    if not h["Terms_Code"] and customer and customer.get("Terms_Code"):
        header["Terms_Code"] = customer["Terms_Code"]  # terms default from the customer (§6)
    total = sum(
        (parse_number(d["Line_Extension"]) for d in lines if d.get("Line_Extension")),
        Decimal("0"),
    )
    header.update(Company_Code=ck.company, Invoice_Amount=total)
    insert_rows(ck.conn, il.ar_invoices, [header])
    rows = []
    for i, d in enumerate(lines, 1):
        row = _columns(il.ar_invoice_lines, {k: val for k, val in d.items() if k in _DETAIL_NAMES})
        row.update(
            Company_Code=ck.company,
            Invoice_Or_Transaction=h["Invoice_Or_Transaction"],
            Line_Number=i,
        )
        rows.append(row)
    insert_rows(ck.conn, il.ar_invoice_lines, rows)  # lines may carry different columns


_AR_LINE_FIELDS = ("Line_Extension", "Detail_Description", "GL_Account", "Income_Cost_Center")


def add_ar_invoice(ck: Checks, v: Values) -> list[Row]:
    """One header and one detail line (§6)."""
    customer = check_ar_header(ck, v)
    line = {k: v[k] for k in _AR_LINE_FIELDS}
    check_ar_line(ck, line)
    if ck.rows:
        return []
    write_ar_invoice(ck, v, [line], customer)
    return []


PUT_HANDLERS: dict[str, PutHandler] = {
    "AddCustomer": add_customer,
    "AddWOSiteAddress": add_wo_site_address,
    "AddJob": add_job,
    "UpdateJob": update_job,
    "UpdateJob_UDF": update_job_udf,
    "AddPhase": add_phase,
    "WorkOrderHeader": work_order_header,
    "PreTimeCard": pre_time_card,
    "AddARInvoice": add_ar_invoice,
}

_missing = {s.name for s in SERVICES.values() if s.type == "put"} - set(PUT_HANDLERS)
if _missing:  # pragma: no cover - a new layout without a handler is a programming error
    raise RuntimeError(f"Put services without a sandbox handler: {sorted(_missing)}")
