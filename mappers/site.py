"""ServiceTrade location -> Spectrum WO site (F2). Pure."""

from __future__ import annotations

from clients.errors import MappingError
from clients.servicetrade.models import Location
from clients.spectrum.models import SpectrumRequest
from mappers.rules import ConnectionRules
from mappers.text import fit, phone_digits, state_code


def site_id(n: int, rules: ConnectionRules) -> str:
    """The WO site id for counter value ``n``."""
    return rules.sites.codes.format(n).upper()


def location_tax_codes(state: str, rules: ConnectionRules) -> tuple[str, str]:
    """``(Sales_Tax_Code, Work_State_Tax_Code)`` for a location in ``state``."""
    tax = rules.tax
    sales = (
        tax.sales_tax_by_state.get(state, tax.default_sales_tax_code)
        if state
        else (tax.default_sales_tax_code)
    )
    work_state = tax.work_state_tax_by_state.get(state, "") if state else ""
    return sales, work_state


def st_location_to_wo_site(
    location: Location, *, site: str, customer_code: str, rules: ConnectionRules
) -> tuple[SpectrumRequest, list[str]]:
    """The ``AddWOSiteAddress`` request for ``location`` and the adjustments made."""
    adjustments: list[str] = []
    name = fit(location.name, 30, label="Site_Name", adjustments=adjustments)
    if not name:
        raise MappingError(
            f"location {location.id}", "name", "is empty after cleaning", value=location.name
        )
    addr = location.address
    state = state_code(addr.state if addr else None, label="Site_State", adjustments=adjustments)
    street = fit(addr.street if addr else None, 60, label="Site_Address", adjustments=adjustments)
    sales_tax, work_state = location_tax_codes(state, rules)
    values = {
        "Company_Code": rules.company_code,
        "Site_ID": site,
        "Site_Name": name,
        "Site_Address1": street[:30].rstrip(),
        "Site_Address2": street[30:60].strip(),
        "Site_City": fit(
            addr.city if addr else None, 25, label="Site_City", adjustments=adjustments
        ),
        "Site_State": state,
        "Site_Zip_Code": fit(
            addr.postal_code if addr else None, 10, label="Site_Zip_Code", adjustments=adjustments
        ),
        "Site_Phone1": phone_digits(
            location.phone_number, label="Site_Phone1", adjustments=adjustments
        ),
        "Site_Customer_Code": customer_code,
        "Sales_Tax_Code": sales_tax,
        "Taxable_Flag": "N" if location.taxable is False else "Y",
        "Work_State_Tax_Code": work_state,
        "Work_Site_Email": fit(
            location.email, 80, label="Work_Site_Email", adjustments=adjustments
        ),
    }
    try:
        return SpectrumRequest(service="AddWOSiteAddress", values=values), adjustments
    except ValueError as exc:
        raise MappingError(f"location {location.id}", "AddWOSiteAddress", str(exc)) from exc
