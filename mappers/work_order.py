"""ServiceTrade job -> Spectrum work order (F4, the legacy "Send Job to Spectrum" mode). Pure.

``WorkOrderHeader`` adds or updates: sending the same job again overwrites the fields below in
Spectrum (users of the legacy integration expect that). Blank elements never overwrite, so a
value removed in ServiceTrade (a cleared customer PO) stays in Spectrum.

- ``WO_Number`` = ``work_orders.leading_character`` + the ServiceTrade job number (≤10, a code);
- ``WO_Reference_Code`` = ``S`` (site work order), ``WO_Job_Number`` = the mapped WO site id;
- ``Bill_Customer_Code`` = the mapped customer code; ``WO_Job_Division`` = ``work_orders.wo_type``
  (Spectrum requires it on a new work order, so it must be configured);
- ``Contract_Number`` when the job's contract is in ``work_orders.contract_map``;
- ``Summary_Description`` = the job description (else its name), up to 250 characters;
- ``Customer_PO_Number`` = the job's customer PO. A PO longer than Spectrum's 25 characters is an
  error, not a cut: a shortened PO number would no longer match the customer's paperwork.
"""

from __future__ import annotations

from clients.errors import MappingError
from clients.servicetrade.models import Job
from clients.spectrum.models import SpectrumRequest
from clients.spectrum.services import WORK_ORDER_HEADER
from mappers.job import ANY_CONNECTION, check_key, job_record
from mappers.rules import ConnectionRules
from mappers.text import ascii_printable, fit

_WO_NUMBER_MAX = WORK_ORDER_HEADER.field("WO_Number").max_len
_PO_MAX = WORK_ORDER_HEADER.field("Customer_PO_Number").max_len
_SUMMARY_MAX = WORK_ORDER_HEADER.field("Summary_Description").max_len


def work_order_number(job: Job, rules: ConnectionRules) -> str:
    """``leading_character`` + ServiceTrade job number (``W52311``)."""
    number = f"{rules.work_orders.leading_character}{job.number}"
    return check_key(job_record(job), "WO_Number", number, _WO_NUMBER_MAX)


def work_order_contract(job: Job, rules: ConnectionRules) -> str | None:
    """The Spectrum contract number mapped to the job's ServiceTrade contract, or None."""
    if job.contract is None:
        return None
    mapped = rules.work_orders.contract_map.get(str(job.contract.id), "").strip()
    return mapped or None


def st_job_to_work_order(
    job: Job,
    *,
    customer_code: str,
    site_id: str,
    rules: ConnectionRules,
    contract_number: str | None,
    connection: str = ANY_CONNECTION,
) -> tuple[SpectrumRequest, list[str]]:
    """The ``WorkOrderHeader`` request for ``job`` and the adjustments made to fit Spectrum."""
    record = job_record(job)
    wo = rules.work_orders
    if not wo.wo_type:
        raise MappingError(
            record,
            "WO_Job_Division",
            "Spectrum needs a WO type on a new work order; set "
            f"wo_type in [connections.{connection}.work_orders]",
        )
    if not customer_code:
        raise MappingError(record, "Bill_Customer_Code", "the job's customer has no Spectrum code")
    if not site_id:
        raise MappingError(record, "WO_Job_Number", "the job's location has no Spectrum site id")
    adjustments: list[str] = []
    po = ascii_printable(job.customer_po or "")
    if len(po) > _PO_MAX:
        raise MappingError(
            record,
            "Customer_PO_Number",
            f"customer PO {po!r} is {len(po)} characters; Spectrum "
            f"allows {_PO_MAX}. Shorten it on the ServiceTrade job and send again",
            value=po,
        )
    summary_source = job.description if (job.description or "").strip() else job.name
    values = {
        "Company_Code": rules.company_code,
        "WO_Number": work_order_number(job, rules),
        "WO_Reference_Code": "S",
        "WO_Job_Number": site_id,
        "WO_Job_Division": wo.wo_type,
        "Bill_Customer_Code": customer_code,
        "Contract_Number": (contract_number or "").strip(),
        "Customer_PO_Number": po,
        "Summary_Description": fit(
            summary_source, _SUMMARY_MAX, label="Summary_Description", adjustments=adjustments
        ),
        "Price_Type": wo.price_type,
        "Lead_Source": wo.lead_source,
    }
    try:
        return SpectrumRequest(service="WorkOrderHeader", values=values), adjustments
    except ValueError as exc:
        raise MappingError(record, "WorkOrderHeader", str(exc)) from exc
