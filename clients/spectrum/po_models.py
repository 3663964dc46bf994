"""A Spectrum purchase-order line as the Info-Link reader returns it (F9). Pure: mappers import it.

One line of ``PO_PURCHASE_ORDER_DETAIL_MC`` joined with its header in
``PO_PURCHASE_ORDER_HEADER_MC``; strings trimmed of Info-Link's CHAR padding, money ``Decimal``.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from pydantic import BaseModel, ConfigDict


class PoLine(BaseModel):
    """One PO line with the header fields a job item needs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    po_number: str
    line_number: str
    vendor_code: str | None = None
    job_number: str | None = None
    #: the PO's order date (``PO_Date_List1``)
    order_date: date | None = None
    #: header status: P proposed / O open / C closed
    po_status: str | None = None
    item_code: str | None = None
    description: str | None = None
    #: quantity ordered (``PO_Quantity_List1``); 0 when Spectrum holds none
    quantity: Decimal = Decimal(0)
    #: unit cost (``Item_Price``); 0 when Spectrum holds none
    unit_cost: Decimal = Decimal(0)
    unit_of_measure: str | None = None
    #: line extension (``Line_Extension_List1``)
    extension: Decimal | None = None
    gl_account: str | None = None
    phase_code: str | None = None
    cost_type: str | None = None
    #: O open / C closed / X cancelled
    line_status: str | None = None
    #: the later of the header's and the line's ``Date_Modified``
    modified_at: datetime | None = None
