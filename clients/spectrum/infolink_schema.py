"""Info-Link tables, Spectrum's read-only SQL view: read by stsync, kept by the sandbox.

Production points a SQLAlchemy URL (``mssql+pyodbc://...``) at the customer's Info-Link database;
the sandbox keeps the same tables in SQLite and *is* Spectrum's state. Table and column names marked
[S] are seen in integrators' docs (reference §11); the rest are assumptions [A] listed in
``docs/assumptions.md`` — this module is the one place that encodes them.

Values in real Info-Link are often space-padded ``CHAR`` columns: readers trim (see
``clients.spectrum.infolink``). The sandbox pads PO keys on purpose so that trimming is exercised.
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Date,
    DateTime,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
)

metadata = MetaData()

MONEY = Numeric(14, 2)
QTY = Numeric(14, 4)


def _co() -> Column[str]:
    return Column("Company_Code", String(3), nullable=False)


# --- masters [S names, reference §11] ------------------------------------------------------------
customers = Table(
    "CR_CUSTOMER_MASTER_MC",
    metadata,
    _co(),
    Column("Customer_Code", String(10), nullable=False),
    Column("Name", String(30)),
    Column("Address_1", String(30)),
    Column("Address_2", String(30)),
    Column("City", String(25)),
    Column("State", String(2)),
    Column("Zip_Code", String(10)),
    Column("Phone", String(14)),
    Column("Terms_Code", String(1)),
    Column("Sales_Tax_Code", String(15)),
    Column("Salesperson", String(3)),
    Column("Cost_Center", String(10)),
    Column("Status", String(1), default="A"),
    Column("Date_Created", Date),
)

jobs = Table(
    "JC_JOB_MASTER_MC",
    metadata,
    _co(),
    Column("Job_Number", String(10), nullable=False),
    Column("Job_Description", String(25)),
    Column("Division", String(5)),
    Column("Address_1", String(30)),
    Column("Address_2", String(30)),
    Column("City", String(25)),
    Column("State", String(2)),
    Column("Zip_Code", String(10)),
    Column("Phone", String(14)),
    Column("Project_Manager", String(15)),
    Column("Customer_Code", String(10)),
    Column("Contract_Number", String(30)),
    Column("Job_Type", String(10)),
    Column("Tax_Class_Code", String(15)),
    Column("Taxable_Flag", String(1)),
    Column("Price_Method_Code", String(1)),
    Column("Est_Start_Date", Date),
    Column("Complete_Date", Date),
    Column("WO_Site", String(10)),
    Column("Cost_Center", String(10)),
    Column("Status_Code", String(1), default="A"),
    Column("Job_Oh_Batch_Code", String(10)),
    Column("Comment", String(125)),
    Column("UDF1", String(20)),
)

phases = Table(
    "JC_PHASE_MASTER_MC",
    metadata,
    _co(),
    Column("Job_Number", String(10), nullable=False),
    Column("Phase_Code", String(20), nullable=False),
    Column("Cost_Type", String(3), nullable=False),
    Column("Description", String(25)),
    Column("Price_Method_Code", String(1)),
    Column("Unit_of_Measure", String(3)),
    Column("Original_Est_Cost", MONEY),
    Column("Cost_Center", String(10)),
    Column("Status_Code", String(1), default="A"),
)

employees = Table(
    "PR_EMPLOYEE_MASTER_1_MC",
    metadata,
    _co(),
    Column("Employee_Code", String(11), nullable=False),
    Column("Employee_Name", String(30)),
    Column("First_Name", String(20)),
    Column("Last_Name", String(20)),
    Column("Employment_Status", String(1), default="A"),
    Column("Department_Code", String(6)),
    Column("Cost_Center", String(10)),
)

vendors = Table(
    "VN_VENDOR_MASTER_MC",
    metadata,
    _co(),
    Column("Vendor_Code", String(10), nullable=False),
    Column("Vendor_Name", String(30)),
    Column("Status", String(1), default="A"),
)

po_headers = Table(
    "PO_PURCHASE_ORDER_HEADER_MC",
    metadata,
    _co(),
    Column("PO_Number", String(10), nullable=False),
    Column("Vendor_Code", String(10)),
    Column("Job_Number", String(10)),
    Column("PO_Date_List1", Date),  # order date [S]
    Column("Status", String(1)),  # P proposed / O open / C closed [A column name]
    Column("Description", String(30)),
    Column("Date_Modified", DateTime),  # [A] change tracking for polling
)

po_details = Table(
    "PO_PURCHASE_ORDER_DETAIL_MC",
    metadata,
    _co(),
    Column("PO_Number", String(10), nullable=False),
    Column("Line_Number", String(3), nullable=False),
    Column("Item_Code", String(15)),
    Column("Item_Description", String(30)),
    Column("PO_Quantity_List1", QTY),
    Column("Item_Price", Numeric(14, 4)),
    Column("Unit_Of_Measure", String(3)),
    Column("Line_Extension_List1", MONEY),
    Column("GL_Account", String(12)),
    Column("Delivery_Date", Date),
    Column("Phase_Code", String(20)),
    Column("Cost_Type", String(3)),
    Column("Line_Status", String(1)),  # [A] O open / C closed / X cancelled
    Column("Date_Modified", DateTime),  # [A]
)

# --- tables with assumed names [A] ---------------------------------------------------------------
sites = Table(
    "WO_SITE_MASTER_MC",
    metadata,
    _co(),
    Column("Site_ID", String(10), nullable=False),
    Column("Site_Name", String(30)),
    Column("Site_Address1", String(30)),
    Column("Site_Address2", String(30)),
    Column("Site_City", String(25)),
    Column("Site_State", String(2)),
    Column("Site_Zip_Code", String(10)),
    Column("Site_Phone1", String(14)),
    Column("Site_Customer_Code", String(10)),
    Column("Sales_Tax_Code", String(15)),
    Column("Work_State_Tax_Code", String(10)),
    Column("Cost_Center", String(10)),
    Column("Status", String(1), default="A"),
)

work_orders = Table(
    "WO_WORK_ORDER_HEADER_MC",
    metadata,
    _co(),
    Column("WO_Number", String(10), nullable=False),
    Column("WO_Reference_Code", String(1)),
    Column("WO_Job_Number", String(10)),
    Column("WO_Job_Division", String(5)),
    Column("Bill_Customer_Code", String(10)),
    Column("Contract_Number", String(30)),
    Column("Customer_PO_Number", String(25)),
    Column("Summary_Description", String(250)),
    Column("Price_Type", String(1)),
    Column("Lead_Source", String(15)),
    Column("Cost_Center", String(10)),
    Column("Ordered_Date", Date),
)

ar_invoices = Table(
    "CR_INVOICE_HEADER_MC",
    metadata,
    _co(),
    Column("Invoice_Or_Transaction", String(10), nullable=False),
    Column("Customer_Code", String(10)),
    Column("Transaction_Type", String(1)),
    Column("Invoice_Date", Date),
    Column("GL_Date", Date),
    Column("Batch_Code", String(10)),
    Column("Job_Number", String(10)),
    Column("Terms_Code", String(1)),
    Column("Salesperson_Code", String(3)),
    Column("Sales_Tax_Code", String(15)),
    Column("Sales_Tax_Amount", MONEY),
    Column("Invoice_Amount", MONEY),  # sum of line extensions
    Column("Remarks", String(65)),
    Column("Customer_PO", String(25)),
)

ar_invoice_lines = Table(
    "CR_INVOICE_DETAIL_MC",
    metadata,
    _co(),
    Column("Invoice_Or_Transaction", String(10), nullable=False),
    Column("Line_Number", Integer, nullable=False),
    Column("Quantity", QTY),
    Column("Detail_Description", String(30)),
    Column("Unit_Of_Measure", String(3)),
    Column("Line_Extension", MONEY),
    Column("GL_Account", String(12)),
    Column("Taxable_Flag", String(1)),
    Column("Income_Cost_Center", String(10)),
    Column("Message", String(250)),
)

pre_time = Table(
    "PR_PRE_TIME_MC",
    metadata,
    Column("Row_Id", Integer, primary_key=True, autoincrement=True),
    _co(),
    Column("Employee_Code", String(11)),
    Column("Batch_Code", String(8)),
    Column("Pay_Type", String(10)),
    Column("Work_Date", Date),
    Column("Department_Code", String(6)),
    Column("Hours_Employee", Numeric(8, 2)),
    Column("Job_Number", String(10)),
    Column("Phase_Code", String(20)),
    Column("Cost_Type", String(3)),
    Column("Message", String(30)),
    Column("Pay_Rate_Code", String(1)),
    Column("Pay_Rate", Numeric(12, 4)),
    Column("State", String(10)),
    Column("Cost_Center", String(10)),
)

# --- reference data ("file maintenance" lists) [A names] -----------------------------------------
terms = Table(
    "CR_TERMS_MC",
    metadata,
    _co(),
    Column("Terms_Code", String(1)),
    Column("Description", String(30)),
)
sales_tax_codes = Table(
    "CR_SALES_TAX_MC",
    metadata,
    _co(),
    Column("Sales_Tax_Code", String(15)),
    Column("Description", String(30)),
    Column("Rate", Numeric(7, 4)),
)
tax_classes = Table(
    "JC_TAX_CLASS_MC",
    metadata,
    _co(),
    Column("Tax_Class_Code", String(15)),
    Column("Description", String(30)),
)
cost_centers = Table(
    "GL_COST_CENTER_MC",
    metadata,
    _co(),
    Column("Cost_Center", String(10)),
    Column("Description", String(30)),
)
gl_accounts = Table(
    "GL_ACCOUNT_MASTER_MC",
    metadata,
    _co(),
    Column("GL_Account", String(12)),
    Column("Description", String(30)),
    Column("Direct_Cost_Flag", String(1)),
)
cost_types = Table(
    "JC_COST_TYPE_MC",
    metadata,
    _co(),
    Column("Cost_Type", String(3)),
    Column("Description", String(30)),
)
salespersons = Table(
    "CR_SALESPERSON_MC",
    metadata,
    _co(),
    Column("Salesperson_Code", String(3)),
    Column("Name", String(30)),
)
pay_types = Table(
    "PR_PAY_TYPE_MC",
    metadata,
    _co(),
    Column("Pay_Type", String(10)),
    Column("Description", String(30)),
)
departments = Table(
    "PR_DEPARTMENT_MC",
    metadata,
    _co(),
    Column("Department_Code", String(6)),
    Column("Description", String(30)),
)
job_types = Table(
    "JC_JOB_TYPE_MC",
    metadata,
    _co(),
    Column("Job_Type", String(10)),
    Column("Description", String(30)),
)
