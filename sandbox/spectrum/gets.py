"""Get services: read the Info-Link tables, filter (SuperSelect), sort per ``pSort_By``.

Each handler returns the rows (row fields as wire text, Error_* left empty) or adds ``I`` rows to
``checks`` for a bad parameter. Filters follow reference §5–§6 and §9.8.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import date
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Table

from clients.spectrum import infolink_schema as il
from clients.spectrum.formats import format_date
from clients.spectrum.services import SERVICES
from sandbox.spectrum import assumptions as assume
from sandbox.spectrum.db import all_extras
from sandbox.spectrum.superselect import compile_filter
from sandbox.spectrum.validation import Checks

Values = Mapping[str, str]
Record = dict[str, str]
GetHandler = Callable[[Checks, Values], list[Record]]


def wire(value: Any) -> str:
    """A column value as Spectrum returns it: slash dates, plain decimals, trimmed text."""
    if value is None:
        return ""
    if isinstance(value, date):
        return format_date(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value).rstrip()


def _records(ck: Checks, table: Table, key: str, names: Iterable[str]) -> list[Record]:
    """Every row of ``table`` in the company as wire text, with its extras merged in."""
    extra = all_extras(ck.conn, table.name, ck.company)
    wanted = tuple(names)
    out = []
    for row in ck.conn.execute(sa.select(table).where(table.c.Company_Code == ck.company)):
        m = row._mapping
        rec = {n: wire(m[n]) for n in wanted if n in m}
        rec.update(extra.get(str(m[key]).rstrip(), {}))
        out.append(rec)
    return out


def _statuses(
    ck: Checks, param: str, value: str, blank: frozenset[str] | None, allowed: str
) -> frozenset[str] | None:
    """The statuses a status parameter selects (None: every status)."""
    if value == "":
        return blank
    if value.upper() == "ALL":
        return None
    if value in allowed:
        return frozenset({value})
    ck.add("I", param, f"{param} is invalid, value must be blank or one of {', '.join(allowed)}")
    return frozenset()


def _sort_key(ck: Checks, value: str, sorts: Mapping[str, tuple[str, ...]]) -> tuple[str, ...]:
    if value in sorts:
        return sorts[value]
    options = ", ".join(k or "blank" for k in sorts)
    ck.add("I", "pSort_By", f"pSort_By is invalid, value must be one of {options}")
    return sorts[""]


def _select(
    records: list[Record],
    status_field: str,
    statuses: frozenset[str] | None,
    superselect: Mapping[str, str],
    exact: Mapping[str, str],
    sort: tuple[str, ...],
) -> list[Record]:
    matchers = [(f, compile_filter(expr)) for f, expr in superselect.items() if expr.strip()]
    exact_items = [(f, val.strip()) for f, val in exact.items() if val.strip()]
    chosen = [
        r
        for r in records
        if (statuses is None or r.get(status_field, "") in statuses)
        and all(m(r.get(f, "")) for f, m in matchers)
        and all(r.get(f, "") == val for f, val in exact_items)
    ]
    chosen.sort(key=lambda r: tuple(r.get(f, "") for f in sort))
    return chosen


_JOB_SORTS = {
    "": ("Job_Number",),
    "D": ("Division", "Job_Number"),
    "P": ("Project_Manager", "Job_Number"),
    "S": ("Superintendent", "Job_Number"),
    "E": ("Estimator", "Job_Number"),
    "C": ("Customer_Code", "Job_Number"),
}


def get_job(ck: Checks, p: Values) -> list[Record]:
    statuses = _statuses(ck, "pStatus_Code", p["pStatus_Code"], frozenset({"A", "I"}), "AIC")
    sort = _sort_key(ck, p["pSort_By"], _JOB_SORTS)
    if ck.rows:
        return []
    records = _records(ck, il.jobs, "Job_Number", SERVICES["GetJob"].row_fields)
    return _select(
        records,
        "Status_Code",
        statuses,
        {
            "Division": p["pDivision"],
            "Project_Manager": p["pProject_Manager"],
            "Superintendent": p["pSuperintendent"],
            "Estimator": p["pEstimator"],
            "Customer_Code": p["pCustomer_Code"],
        },
        {"Cost_Center": p["pCost_Center"]},
        sort,
    )


_PHASE_SORTS = {
    "": ("Job_Number", "Phase_Code", "Cost_Type"),
    "C": ("Cost_Type", "Job_Number", "Phase_Code"),
}


def get_phase(ck: Checks, p: Values) -> list[Record]:
    statuses = _statuses(ck, "pStatus_Code", p["pStatus_Code"], assume.PHASE_BLANK_STATUS, "AIC")
    sort = _sort_key(ck, p["pSort_By"], _PHASE_SORTS)
    if ck.rows:
        return []
    records = []
    for row in ck.conn.execute(sa.select(il.phases).where(il.phases.c.Company_Code == ck.company)):
        m = row._mapping
        records.append(
            {
                "Job_Number": wire(m["Job_Number"]),
                "Phase_Code": wire(m["Phase_Code"]),
                "Cost_Type": wire(m["Cost_Type"]),
                "Description": wire(m["Description"]),
                "Status_Code": wire(m["Status_Code"]),
                "Unit_of_Measure": wire(m["Unit_of_Measure"]),
                "JTD_Quantity": assume.JTD_ZERO,
                "JTD_Hours": assume.JTD_ZERO,
                "JTD_Actual_Dollars": assume.JTD_ZERO,
                "Current_Estimated_Dollars": wire(m["Original_Est_Cost"]),
                "Cost_Center": wire(m["Cost_Center"]),
            }
        )
    return _select(
        records,
        "Status_Code",
        statuses,
        {"Cost_Type": p["pCost_Type"], "Job_Number": p["pJob_Number"]},
        {"Cost_Center": p["pCost_Center"]},
        sort,
    )


_EMPLOYEE_SORTS = {
    "": ("Employee_Code",),
    "A": ("Employee_Name", "Employee_Code"),
    "F": ("First_Name", "Employee_Code"),
    "L": ("Last_Name", "Employee_Code"),
    "D": ("Department_Code", "Employee_Code"),
}


def get_employee(ck: Checks, p: Values) -> list[Record]:
    status = p["pStatus_Type"]
    statuses = frozenset({status}) if status else assume.EMPLOYEE_BLANK_STATUS
    sort = _sort_key(ck, p["pSort_By"], _EMPLOYEE_SORTS)
    if ck.rows:
        return []
    names = SERVICES["GetEmployee"].row_fields
    records = _records(ck, il.employees, "Employee_Code", names)
    return _select(
        records,
        "Employment_Status",
        statuses,
        {
            "Wage_Class": p["pWage_Class"],
            "Union_Code": p["pUnion_Code"],
            "Occupation": p["pOccupation"],
            "Trade": p["pTrade"],
        },
        {"Cost_Center": p["pCost_Center"]},
        sort,
    )


#: GetCustomers answers words, not letters (reference §6).
_STATUS_WORDS = {"A": "Active", "I": "Inactive", "N": "Not Used"}
_TAXABLE_WORDS = {"Y": "Taxable", "N": "Non-Taxable", "": "No Default"}
_CUSTOMER_STATUS = {
    "": frozenset({"A"}),
    "A": frozenset({"A"}),
    "I": frozenset({"A", "I"}),
}


def get_customers(ck: Checks, p: Values) -> list[Record]:
    wanted = p["pStatus"].strip()
    statuses: frozenset[str] | None
    if wanted.upper() == "ALL":
        statuses = None
    elif wanted in _CUSTOMER_STATUS:
        statuses = _CUSTOMER_STATUS[wanted]
    else:
        ck.add("I", "pStatus", "pStatus is invalid, value must be blank, A, I or ALL")
        return []
    extra = all_extras(ck.conn, il.customers.name, ck.company)
    out = []
    for row in ck.conn.execute(
        sa.select(il.customers)
        .where(il.customers.c.Company_Code == ck.company)
        .order_by(il.customers.c.Customer_Code)
    ):
        m = row._mapping
        status = wire(m["Status"]) or "A"
        if statuses is not None and status not in statuses:
            continue
        code = wire(m["Customer_Code"])
        taxable = extra.get(code, {}).get("Taxable_Flag", "")
        out.append(
            {
                "Customer_Code": code,
                "Name": wire(m["Name"]),
                "Address_1": wire(m["Address_1"]),
                "Address_2": wire(m["Address_2"]),
                "City": wire(m["City"]),
                "State": wire(m["State"]),
                "Zip_Code": wire(m["Zip_Code"]),
                "Phone_Number": wire(m["Phone"]),
                "Taxable_Flag": _TAXABLE_WORDS.get(taxable, taxable),
                "Status": _STATUS_WORDS.get(status, status),
            }
        )
    return out


GET_HANDLERS: dict[str, GetHandler] = {
    "GetCustomers": get_customers,
    "GetJob": get_job,
    "GetPhase": get_phase,
    "GetEmployee": get_employee,
}

_missing = {s.name for s in SERVICES.values() if s.type == "get"} - set(GET_HANDLERS)
if _missing:  # pragma: no cover - a new layout without a handler is a programming error
    raise RuntimeError(f"Get services without a sandbox handler: {sorted(_missing)}")
