"""Spectrum Data Exchange service layouts: the one place both the client and the sandbox read.

Every SOAP service is a flat list of elements after ``Authorization_ID`` and ``GUID``. A live
integrator found that every element declared in the WSDL must be present (reference §1), so the
client always sends every element listed here, empty when unused, and the sandbox's WSDLs and
validation are generated from the same lists. Max lengths, required flags and formats come from
``shared/reference/spectrum-data-exchange.md`` §5–§6; where the reference is silent the choice is an
assumption and is listed in ``docs/assumptions.md``.

Change a layout here and both sides follow.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

#: Namespace of the operation element (Spectrum runs on Northgate ProIV), reference §1.
NS_TYPES = "http://www.northgate-is.com/proiv/webservices/types"
NS_SOAP = "http://schemas.xmlsoap.org/soap/envelope/"

#: Characters Spectrum forbids in key fields (customer, job, site codes ...), reference §5.
FORBIDDEN_KEY_CHARS = frozenset("/*?\"'><#,&~")


class Kind(StrEnum):
    """How a value is formatted and validated."""

    TEXT = "text"  # free text, truncated (or refused in strict mode) past max
    KEY = "key"  # identifier: no forbidden characters
    UPPER_KEY = "upper_key"  # identifier that must also be uppercase (Customer_Code)
    DATE = "date"  # MM/DD/CCYY
    NUMBER = "number"  # -1234.56, no separators; max counts sign and point
    FLAG = "flag"  # Y or N
    PHONE = "phone"  # digits only


@dataclass(frozen=True)
class Field:
    """One element of a service layout."""

    name: str
    max_len: int
    required: bool = False
    kind: Kind = Kind.TEXT
    #: allowed values (letters, codes); empty means any
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class Service:
    """A Data Exchange service as the client sends it and the sandbox serves it."""

    name: str
    type: Literal["put", "get"]
    fields: tuple[Field, ...]
    #: Get services: the fields of each returned ``response`` row (Error_* appended on the wire)
    row_fields: tuple[str, ...] = ()

    @property
    def row_wrapper(self) -> str:
        """Get rows sit in a lower-camel wrapper named after the service (``getJob``)."""
        return self.name[0].lower() + self.name[1:]

    def field(self, name: str) -> Field:
        """The field called ``name`` (KeyError if the layout has none)."""
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"{self.name} has no element {name}")

    @property
    def field_names(self) -> tuple[str, ...]:
        """Element names in wire order (after Authorization_ID and GUID)."""
        return tuple(f.name for f in self.fields)


ERROR_ROW_FIELDS = ("Error_Code", "Error_Description", "Error_Column")

T, K, UK, D, N, FL, PH = (
    Kind.TEXT,
    Kind.KEY,
    Kind.UPPER_KEY,
    Kind.DATE,
    Kind.NUMBER,
    Kind.FLAG,
    Kind.PHONE,
)


def _f(name: str, max_len: int, kind: Kind = T, *, req: bool = False, choices: str = "") -> Field:
    return Field(name, max_len, req, kind, tuple(choices.split()) if choices else ())


def _udfs() -> tuple[Field, ...]:
    return tuple(_f(f"UDF{i}", 20) for i in range(1, 21))


ADD_CUSTOMER = Service(
    "AddCustomer",
    "put",
    (
        _f("Company_Code", 3, K, req=True),
        _f("Customer_Code", 10, UK, req=True),
        _f("Name", 30, req=True),
        _f("Alpha_Sort", 8),
        _f("Address_1", 30),
        _f("Address_2", 30),
        _f("City", 25),
        _f("State", 2),
        _f("Zip_Code", 10),
        _f("Phone", 14, PH),
        _f("Fax_Phone", 14, PH),
        _f("Contact_1", 20),
        _f("Terms_Code", 1, K, req=True),
        _f("Sales_Tax_Code", 15, K, req=True),
        _f("Salesperson", 3, K),
        _f("Taxable_Flag", 1, FL),
        _f("Customer_Email", 70),
        _f("Cost_Center", 10, K),
    ),
)

GET_CUSTOMERS = Service(
    "GetCustomers",
    "get",
    (_f("pCompany_Code", 3, K), _f("pStatus", 3)),
    row_fields=(
        "Customer_Code",
        "Name",
        "Address_1",
        "Address_2",
        "City",
        "State",
        "Zip_Code",
        "Phone_Number",
        "Taxable_Flag",
        "Status",
    ),
)

ADD_WO_SITE_ADDRESS = Service(
    "AddWOSiteAddress",
    "put",
    (
        _f("Company_Code", 3, K, req=True),
        _f("Site_ID", 10, K, req=True),
        _f("Site_Name", 30, req=True),
        _f("Site_Address1", 30),
        _f("Site_Address2", 30),
        _f("Site_City", 25),
        _f("Site_State", 2),
        _f("Site_Zip_Code", 10),
        _f("Site_Phone1", 14, PH),
        _f("Site_Contact_Person", 20),
        _f("Site_Customer_Code", 10, UK),
        _f("Sales_Tax_Code", 15, K),
        _f("Taxable_Flag", 1, FL),
        _f("Work_State_Tax_Code", 10, K),
        _f("Work_Site_Email", 80),
        _f("Cost_Center", 10, K),
    ),
)

_JOB_COMMON = (
    _f("Company_Code", 3, K, req=True),
    _f("Job_Number", 10, K, req=True),
    _f("Job_Description", 25),
    _f("Division", 5, N),
    _f("Address_1", 30),
    _f("Address_2", 30),
    _f("City", 25),
    _f("State", 2),
    _f("Zip_Code", 10),
    _f("Phone", 14, PH),
    _f("Project_Manager", 15),
    _f("Customer_Code", 10, UK),
    _f("Contract_Number", 30),
    _f("Job_Type", 10, K),
    _f("Tax_Class_Code", 15, K),
    _f("Taxable_Flag", 1, FL),
    _f("Price_Method_Code", 1, choices="F T C U"),
    _f("Est_Start_Date", 10, D),
    _f("Complete_Date", 10, D),
    _f("WO_Site", 10, K),
    _f("Cost_Center", 10, K),
    _f("Status_Code", 1, choices="A I C"),
)

ADD_JOB = Service(
    "AddJob",
    "put",
    tuple(
        Field(
            f.name,
            f.max_len,
            f.name in {"Taxable_Flag", "Price_Method_Code"} or f.required,
            f.kind,
            f.choices,
        )
        for f in _JOB_COMMON
    )
    + (_f("UDF1", 20),),
)

UPDATE_JOB = Service(
    "UpdateJob",
    "put",
    _JOB_COMMON + (_f("Job_Oh_Batch_Code", 10, K), _f("Comment", 125)),
)

UPDATE_JOB_UDF = Service(
    "UpdateJob_UDF",
    "put",
    (_f("Company_Code", 3, K, req=True), _f("Job_Number", 10, K, req=True)) + _udfs(),
)

ADD_PHASE = Service(
    "AddPhase",
    "put",
    (
        _f("Company_Code", 3, K),
        _f("Job_Number", 10, K, req=True),
        _f("Phase_Code", 20, K, req=True),
        _f("Cost_Type", 3, K, req=True),
        _f("Description", 25),
        _f("Price_Method_Code", 1, req=True, choices="F T C U J"),
        _f("Unit_of_Measure", 3),
        _f("Original_Est_Cost", 12, N),
        _f("Phase_Cost_Center", 10, K),
        _f("Status_Code", 1, choices="A I C"),
    ),
)

GET_JOB = Service(
    "GetJob",
    "get",
    (
        _f("pCompany_Code", 3, K),
        _f("pDivision", 5),
        _f("pStatus_Code", 1),
        _f("pProject_Manager", 15),
        _f("pSuperintendent", 15),
        _f("pEstimator", 15),
        _f("pCustomer_Code", 10),
        _f("pCost_Center", 10),
        _f("pSort_By", 1),
    ),
    row_fields=(
        "Company_Code",
        "Job_Number",
        "Job_Description",
        "Division",
        "Address_1",
        "Address_2",
        "City",
        "State",
        "Zip_Code",
        "Project_Manager",
        "Superintendent",
        "Estimator",
        "Certified_Flag",
        "Customer_Code",
        "Status_Code",
        "Work_State_Tax_Code",
        "Contract_Number",
        "Cost_Center",
    ),
)

GET_PHASE = Service(
    "GetPhase",
    "get",
    (
        _f("pCompany_Code", 3, K),
        _f("pCost_Type", 3),
        _f("pJob_Number", 10),
        _f("pStatus_Code", 1),
        _f("pCost_Center", 10),
        _f("pSort_By", 1),
    ),
    row_fields=(
        "Job_Number",
        "Phase_Code",
        "Cost_Type",
        "Description",
        "Status_Code",
        "Unit_of_Measure",
        "JTD_Quantity",
        "JTD_Hours",
        "JTD_Actual_Dollars",
        "Current_Estimated_Dollars",
        "Cost_Center",
    ),
)

WORK_ORDER_HEADER = Service(
    "WorkOrderHeader",
    "put",
    (
        _f("Company_Code", 3, K),
        _f("WO_Number", 10, K),
        _f("WO_Reference_Code", 1, req=True, choices="S J"),
        _f("WO_Job_Number", 10, K, req=True),
        _f("WO_Job_Division", 5),
        _f("Bill_Customer_Code", 10, UK),
        _f("Contract_Number", 30),
        _f("Customer_PO_Number", 25),
        _f("Summary_Description", 250),
        _f("Priority_Code", 2),
        _f("Price_Type", 1, choices="F T"),
        _f("Lead_Source", 15),
        _f("Ordered_Date", 10, D),
        _f("Cost_Center", 10, K),
    ),
)

PRE_TIME_CARD = Service(
    "PreTimeCard",
    "put",
    (
        _f("Company_Code", 3, K),
        _f("Employee_Code", 11, K),
        _f("Batch_Code", 8, K, req=True),
        _f("Pay_Type", 10, K, req=True),
        _f("Work_Date", 10, D, req=True),
        _f("Department_Code", 6, K),
        _f("Hours_Employee", 8, N),
        _f("Job_Number", 10, K),
        _f("Phase_Code", 20, K),
        _f("Cost_Type", 3, K),
        _f("Message", 30),
        _f("Pay_Rate_Code", 1),
        _f("Pay_Rate", 12, N),
        _f("State", 10, K),
        _f("Cost_Center", 10, K),
    ),
)

GET_EMPLOYEE = Service(
    "GetEmployee",
    "get",
    (
        _f("pCompany_Code", 3, K),
        _f("pWage_Class", 10),
        _f("pUnion_Code", 10),
        _f("pOccupation", 50),
        _f("pTrade", 50),
        _f("pStatus_Type", 1),
        _f("pCost_Center", 10),
        _f("pSort_By", 1),
    ),
    row_fields=(
        "Employee_Code",
        "Employee_Name",
        "Employment_Status",
        "Department_Code",
        "First_Name",
        "Last_Name",
        "Cost_Center",
    ),
)

_AR_HEADER = (
    _f("Company_Code", 3, K, req=True),
    _f("GL_Date", 10, D, req=True),
    _f("Batch_Code", 10, K, req=True),
    _f("Customer_Code", 10, UK, req=True),
    _f("Invoice_Or_Transaction", 10, K, req=True),
    _f("Transaction_Type", 1, req=True, choices="I C"),
    _f("Invoice_Date", 10, D, req=True),
    _f("Job_Number", 10, K),
    _f("Terms_Code", 1, K),
    _f("Salesperson_Code", 3, K),
    _f("Sales_Tax_Code", 15, K),
    _f("Remarks", 65),
    _f("Customer_PO", 25),
    _f("Sales_Tax_Amount", 13, N),
)

ADD_AR_INVOICE = Service(
    "AddARInvoice",
    "put",
    _AR_HEADER
    + (
        _f("Line_Extension", 13, N, req=True),
        _f("Detail_Description", 30),
        _f("GL_Account", 12, K),
        _f("Income_Cost_Center", 10, K),
    ),
)

#: REST multi-line invoice (``POST /customer/invoice``): header and detail layouts.
AR_MULTI_LINE_HEADER: tuple[Field, ...] = _AR_HEADER
AR_MULTI_LINE_DETAIL: tuple[Field, ...] = (
    _f("Quantity", 11, N),
    _f("Detail_Description", 30),
    _f("Unit_Of_Measure", 3),
    _f("Line_Extension", 13, N),
    _f("GL_Account", 12, K),
    _f("Taxable_Flag", 1, FL),
    _f("Income_Cost_Center", 10, K),
    _f("Message", 250),
)
#: Authorization name under which the REST invoice service is granted (reference §8).
AR_MULTI_LINE_AUTH_NAME = "ARMultiLineInvoice"

SERVICES: dict[str, Service] = {
    s.name: s
    for s in (
        ADD_CUSTOMER,
        GET_CUSTOMERS,
        ADD_WO_SITE_ADDRESS,
        ADD_JOB,
        UPDATE_JOB,
        UPDATE_JOB_UDF,
        ADD_PHASE,
        GET_JOB,
        GET_PHASE,
        WORK_ORDER_HEADER,
        PRE_TIME_CARD,
        GET_EMPLOYEE,
        ADD_AR_INVOICE,
    )
}

#: Which unique key each add-only service protects (duplicate -> ``I`` row on that column).
UNIQUE_KEYS: dict[str, str] = {
    "AddCustomer": "Customer_Code",
    "AddWOSiteAddress": "Site_ID",
    "AddJob": "Job_Number",
    "AddARInvoice": "Invoice_Or_Transaction",
}

#: Wording of the duplicate-key message. The reference calls its wording a guess (§4): the client
#: recognises a duplicate by an ``I`` row on the service's unique column, not by this text.
DUPLICATE_MESSAGE = "{column} already exists"
