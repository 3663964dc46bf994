"""ServiceTrade company -> Spectrum AR customer (F1). Pure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from clients.errors import MappingError, RecordSkipped
from clients.servicetrade.models import Company
from clients.spectrum.models import SpectrumRequest
from mappers.rules import ConnectionRules
from mappers.text import fit, phone_digits, state_code


def customer_skip_reason(company: Company) -> str | None:
    """Why a company is not an AR customer (vendors, the account's own company), or None."""
    if company.is_customer is False:
        return f"company {company.id} is not a customer (isCustomer=false); not sent to Spectrum"
    return None


def customer_code(n: int, rules: ConnectionRules) -> str:
    """The customer code for counter value ``n`` (prefix + zero-padded number, uppercase)."""
    return rules.customers.codes.format(n).upper()


def customer_sales_tax_code(company: Company, rules: ConnectionRules) -> str:
    """The customer's default sales-tax code: by state when derivation is on, else configured."""
    state = (company.address.state if company.address else None) or ""
    if rules.tax.derive_from_state and state.upper() in rules.tax.sales_tax_by_state:
        return rules.tax.sales_tax_by_state[state.upper()]
    return rules.customers.sales_tax_code


def st_company_to_add_customer(
    company: Company, *, code: str, rules: ConnectionRules
) -> tuple[SpectrumRequest, list[str]]:
    """The ``AddCustomer`` request for ``company`` and the adjustments made to fit Spectrum."""
    skip = customer_skip_reason(company)
    if skip:
        raise RecordSkipped(skip)
    adjustments: list[str] = []
    name = fit(company.name, 30, label="Name", adjustments=adjustments, no_commas=True)
    if not name:
        raise MappingError(
            f"company {company.id}", "name", "is empty after cleaning", value=company.name
        )
    addr = company.address
    street = fit(addr.street if addr else None, 60, label="Address", adjustments=adjustments)
    values = {
        "Company_Code": rules.company_code,
        "Customer_Code": code,
        "Name": name,
        "Address_1": street[:30].rstrip(),
        "Address_2": street[30:60].strip(),
        "City": fit(addr.city if addr else None, 25, label="City", adjustments=adjustments),
        "State": state_code(addr.state if addr else None, label="State", adjustments=adjustments),
        "Zip_Code": fit(
            addr.postal_code if addr else None, 10, label="Zip_Code", adjustments=adjustments
        ),
        "Phone": phone_digits(company.phone, label="Phone", adjustments=adjustments),
        "Terms_Code": rules.customers.terms_code,
        "Sales_Tax_Code": customer_sales_tax_code(company, rules),
        "Cost_Center": rules.customers.cost_center,
    }
    try:
        return SpectrumRequest(service="AddCustomer", values=values), adjustments
    except ValueError as exc:
        raise MappingError(f"company {company.id}", "AddCustomer", str(exc)) from exc


# --- matching existing Spectrum records (stale external ids, ``stsync link``) -------------------
#: (name column, address columns) of the Spectrum rows matched by name and address
CUSTOMER_MATCH = ("Name", ("Address_1", "Zip_Code"))
SITE_MATCH = ("Site_Name", ("Site_Address1", "Site_Zip_Code"))


def normalised(text: object) -> str:
    """A name or address reduced to what identifies it: letters and digits, upper case."""
    return "".join(ch for ch in str(text or "").upper() if ch.isalnum())


def match_key(values: Mapping[str, object], columns: tuple[str, tuple[str, ...]]) -> str:
    """The normalised name + address of a Spectrum row or request ``values``."""
    name, address = columns
    return "|".join(normalised(values.get(c)) for c in (name, *address))


def matching_rows(
    values: Mapping[str, object],
    rows: Sequence[Mapping[str, object]],
    columns: tuple[str, tuple[str, ...]],
) -> list[Mapping[str, object]]:
    """The Spectrum ``rows`` whose normalised name and address equal those of ``values``.

    A blank name never matches (nothing identifies it).
    """
    want = match_key(values, columns)
    if not normalised(values.get(columns[0])):
        return []
    return [row for row in rows if match_key(row, columns) == want]
