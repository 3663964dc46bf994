"""Customer codes, sanitising and the AddCustomer / AddWOSiteAddress mappers (F1, F2)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clients.errors import MappingError, RecordSkipped, SyncError
from clients.servicetrade.models import Company, Location
from clients.spectrum.services import FORBIDDEN_KEY_CHARS
from mappers.customer import customer_code, st_company_to_add_customer
from mappers.rules import CodeRange, ConnectionRules, CustomerRules, TaxRules
from mappers.site import site_id, st_location_to_wo_site
from mappers.text import ascii_printable, fit, phone_digits

RULES = ConnectionRules(
    company_code="ABC",
    tax=TaxRules(
        sales_tax_by_state={"NC": "NC"},
        work_state_tax_by_state={"NC": "NC"},
        default_sales_tax_code="EXEMPT",
    ),
)


def company(**kw: Any) -> Company:
    data = {
        "id": 200,
        "name": "Burger Bistro Inc",
        "isCustomer": True,
        "address": {"street": "1 Main St", "city": "Durham", "state": "NC", "postalCode": "27701"},
        "phone": "(919) 555-0100",
    }
    data.update(kw)
    return Company.model_validate(data)


@pytest.mark.parametrize(
    ("rng", "n", "code"),
    [
        (CodeRange(prefix="C", width=5), 1, "C00001"),
        (CodeRange(prefix="st", width=3, end=999), 42, "ST042"),
        (CodeRange(prefix="", width=10, end=10**10 - 1), 7, "0000000007"),
    ],
)
def test_customer_codes(rng: CodeRange, n: int, code: str) -> None:
    assert (
        customer_code(n, RULES.model_copy(update={"customers": CustomerRules(codes=rng)})) == code
    )


def test_code_range_that_cannot_fit_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="Spectrum allows 10"):
        CodeRange(prefix="CUSTOMER", width=5)
    with pytest.raises(ValueError, match="forbids"):
        CodeRange(prefix="C#")


def test_add_customer_request() -> None:
    req, adjustments = st_company_to_add_customer(company(), code="C00001", rules=RULES)
    assert req.service == "AddCustomer"
    v = req.values
    assert v["Customer_Code"] == "C00001" and v["Company_Code"] == "ABC"
    assert v["Name"] == "Burger Bistro Inc" and v["Phone"] == "9195550100"
    assert (v["Address_1"], v["City"], v["State"], v["Zip_Code"]) == (
        "1 Main St",
        "Durham",
        "NC",
        "27701",
    )
    assert v["Terms_Code"] == "N" and v["Sales_Tax_Code"] == "EXEMPT"
    assert adjustments == []


def test_names_are_cleaned_and_shortened_with_a_record_of_it() -> None:
    long = "O'Brien & Sons, Fire Protection and Sprinkler Services, Inc. 🚒"
    req, adjustments = st_company_to_add_customer(company(name=long), code="C00002", rules=RULES)
    assert len(req.values["Name"]) <= 30 and "," not in req.values["Name"]
    assert "🚒" not in req.values["Name"]
    assert any("shortened" in a for a in adjustments)


def test_state_derivation_of_sales_tax() -> None:
    rules = RULES.model_copy(
        update={"tax": RULES.tax.model_copy(update={"derive_from_state": True})}
    )
    req, _ = st_company_to_add_customer(company(), code="C1", rules=rules)
    assert req.values["Sales_Tax_Code"] == "NC"


def test_vendor_company_is_skipped() -> None:
    with pytest.raises(RecordSkipped, match="not a customer"):
        st_company_to_add_customer(company(isCustomer=False), code="C1", rules=RULES)


def test_empty_name_is_a_mapping_error_naming_the_field() -> None:
    with pytest.raises(MappingError, match="company 200: name"):
        st_company_to_add_customer(company(name="\x00\x01 🚒 "), code="C1", rules=RULES)


def test_missing_address_is_fine() -> None:
    req, _ = st_company_to_add_customer(company(address=None, phone=None), code="C1", rules=RULES)
    assert req.values["Address_1"] == "" and req.values["Phone"] == ""


def test_wo_site_request_and_tax_codes() -> None:
    loc = Location.model_validate(
        {
            "id": 820,
            "name": "Burger Bistro #12",
            "company": {"id": 200},
            "address": {
                "street": "12 Long Street Name That Goes On And On Suite 400",
                "city": "Durham",
                "state": "nc",
                "postalCode": "27701-1234",
            },
            "phoneNumber": "+1 919.555.0199",
            "taxable": True,
        }
    )
    req, adjustments = st_location_to_wo_site(
        loc, site=site_id(3, RULES), customer_code="C00001", rules=RULES
    )
    v = req.values
    assert v["Site_ID"] == "S00003" and v["Site_Customer_Code"] == "C00001"
    assert (
        v["Site_State"] == "NC" and v["Sales_Tax_Code"] == "NC" and v["Work_State_Tax_Code"] == "NC"
    )
    assert len(v["Site_Address1"]) <= 30 and v["Site_Address2"]
    assert v["Site_Phone1"] == "19195550199" and v["Taxable_Flag"] == "Y"
    assert adjustments == []


def test_bad_state_is_dropped_with_adjustment() -> None:
    loc = Location.model_validate({"id": 1, "name": "X", "address": {"state": "North Carolina"}})
    req, adjustments = st_location_to_wo_site(loc, site="S1", customer_code="C1", rules=RULES)
    assert req.values["Site_State"] == "" and req.values["Sales_Tax_Code"] == "EXEMPT"
    assert any("state" in a for a in adjustments)


def test_helpers() -> None:
    assert ascii_printable("Café\tNoël\x07 ✓") == "Cafe Noel"
    adj: list[str] = []
    assert fit("a, b", 10, label="N", adjustments=adj, no_commas=True) == "a b"
    assert (
        phone_digits("1-800-FLOWERS-0000000000000", label="P", adjustments=adj) == "18000000000000"
    )


@settings(max_examples=200, deadline=None)
@given(
    name=st.text(max_size=80),
    street=st.one_of(st.none(), st.text(max_size=90)),
    state=st.one_of(st.none(), st.text(max_size=5)),
    phone=st.one_of(st.none(), st.text(max_size=30)),
    cid=st.integers(min_value=1, max_value=2**63 - 1),
)
def test_customer_mapper_never_escapes_untyped(
    name: str, street: str | None, state: str | None, phone: str | None, cid: int
) -> None:
    c = Company.model_validate(
        {"id": cid, "name": name, "phone": phone, "address": {"street": street, "state": state}}
    )
    try:
        req, _ = st_company_to_add_customer(c, code="C00001", rules=RULES)
    except SyncError:
        return
    assert len(req.values["Name"]) <= 30
    assert not set(req.values["Customer_Code"]) & FORBIDDEN_KEY_CHARS
    assert all(32 <= ord(ch) <= 126 for ch in req.values["Name"])
