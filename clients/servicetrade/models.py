"""ServiceTrade records as stsync reads them: tolerant inbound models (reference servicetrade-api).

Unknown fields are ignored and optional fields default, so a richer real response still parses.
Ids are int64 (real ids can have 16 digits); timestamps are unix seconds; money is ``Decimal``.
This module imports only pydantic and the standard library: mappers may use it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator


class STModel(BaseModel):
    """Base of inbound ServiceTrade models: tolerant, immutable, camelCase on the wire."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class Ref(STModel):
    """An embedded related record (``{"id", "uri", "name", ...}``)."""

    id: int
    name: str | None = None
    uri: str | None = None


class Address(STModel):
    street: str | None = None
    city: str | None = None
    state: str | None = None
    postal_code: str | None = Field(default=None, alias="postalCode")


class Company(STModel):
    id: int
    name: str
    status: str | None = None
    ref_number: str | None = Field(default=None, alias="refNumber")
    is_customer: bool | None = Field(default=None, alias="isCustomer")
    is_vendor: bool | None = Field(default=None, alias="isVendor")
    address: Address | None = None
    phone: str | None = None
    external_ids: dict[str, str] = Field(default_factory=dict, alias="externalIds")
    created: int | None = None
    updated: int | None = None


class Location(STModel):
    id: int
    name: str
    ref_number: str | None = Field(default=None, alias="refNumber")
    address: Address | None = None
    phone_number: str | None = Field(default=None, alias="phoneNumber")
    email: str | None = None
    company: Ref | None = None
    taxable: bool | None = None
    status: str | None = None
    offices: list[Ref] = Field(default_factory=list)
    #: the location's ServiceTrade region (routing, F24); key assumed, see assumptions.py
    region: Ref | None = None
    external_ids: dict[str, str] = Field(default_factory=dict, alias="externalIds")
    created: int | None = None
    updated: int | None = None


class ServiceLine(STModel):
    id: int
    name: str | None = None
    trade: str | None = None
    abbr: str | None = None


class Tag(STModel):
    id: int | None = None
    name: str


class JobRef(STModel):
    id: int
    number: int | None = None
    name: str | None = None


class Job(STModel):
    id: int
    number: int
    name: str | None = None
    type: str
    status: str
    description: str | None = None
    customer_po: str | None = Field(default=None, alias="customerPo")
    ref_number: str | None = Field(default=None, alias="refNumber")
    vendor: Ref | None = None
    customer: Ref | None = None
    location: Ref | None = None
    owner: Ref | None = None
    #: the reference is unsure whether the key is ``salesperson`` or ``sales`` (§5.3): accept both
    salesperson: Ref | None = Field(
        default=None, validation_alias=AliasChoices("salesperson", "sales")
    )
    assigned_office: Ref | None = Field(default=None, alias="assignedOffice")
    contract: Ref | None = None
    #: deprecated text abbreviation on jobs; an object is accepted too
    service_line: str | None = Field(default=None, alias="serviceLine")
    tags: list[Tag] = Field(default_factory=list)
    external_ids: dict[str, str] = Field(default_factory=dict, alias="externalIds")
    due_by: int | None = Field(default=None, alias="dueBy")
    scheduled_date: int | None = Field(default=None, alias="scheduledDate")
    completed_on: int | None = Field(default=None, alias="completedOn")
    created: int | None = None
    updated: int | None = None

    @field_validator("service_line", mode="before")
    @classmethod
    def _service_line_abbr(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return v.get("abbr") or v.get("name")
        return v


class InvoiceItem(STModel):
    id: int
    description: str | None = None
    quantity: Decimal = Decimal(0)
    price: Decimal = Decimal(0)
    subtotal: Decimal | None = None
    tax_rate: Decimal | None = Field(default=None, alias="taxRate")
    tax_amount: Decimal | None = Field(default=None, alias="taxAmount")
    total_price: Decimal | None = Field(default=None, alias="totalPrice")
    order_index: int | None = Field(default=None, alias="orderIndex")
    lib_item: Ref | None = Field(default=None, alias="libItem")
    service_line: ServiceLine | None = Field(default=None, alias="serviceLine")


class Invoice(STModel):
    id: int
    name: str | None = None
    type: str = "invoice"
    status: str
    invoice_number: str | None = Field(default=None, alias="invoiceNumber")
    ref_number: str | None = Field(default=None, alias="refNumber")
    customer_po: str | None = Field(default=None, alias="customerPo")
    transaction_date: int | None = Field(default=None, alias="transactionDate")
    due_date: int | None = Field(default=None, alias="dueDate")
    subtotal: Decimal | None = None
    tax_amount: Decimal | None = Field(default=None, alias="taxAmount")
    total_price: Decimal | None = Field(default=None, alias="totalPrice")
    customer: Ref | None = None
    vendor: Ref | None = None
    location: Ref | None = None
    job: JobRef | None = None
    contract: Ref | None = None
    assigned_user: Ref | None = Field(default=None, alias="assignedUser")
    assigned_office: Ref | None = Field(default=None, alias="assignedOffice")
    items: list[InvoiceItem] = Field(default_factory=list)
    external_ids: dict[str, str] = Field(default_factory=dict, alias="externalIds")
    created: int | None = None
    updated: int | None = None


class User(STModel):
    id: int
    name: str | None = None
    first_name: str | None = Field(default=None, alias="firstName")
    last_name: str | None = Field(default=None, alias="lastName")
    email: str | None = None
    status: str | None = None
    external_ids: dict[str, str] = Field(default_factory=dict, alias="externalIds")
    updated: int | None = None


class LibItem(STModel):
    id: int
    name: str | None = None
    code: str | None = None
    type: str | None = None


class JobItemSource(STModel):
    type: str
    value: str


class JobItem(STModel):
    id: int
    name: str | None = None
    quantity: Decimal = Decimal(0)
    cost: Decimal | None = None
    used_on: int | None = Field(default=None, alias="usedOn")
    job: JobRef | None = None
    lib_item: LibItem | None = Field(default=None, alias="libItem")
    service_line: ServiceLine | None = Field(default=None, alias="serviceLine")
    vendor: Ref | None = None
    source: JobItemSource | None = None


class Comment(STModel):
    id: int
    entity_type: int | None = Field(default=None, alias="entityType")
    entity_id: int | None = Field(default=None, alias="entityId")
    content: str


# --- approved timecards: the project's assumed resource (reference §11) --------------------------
class TimecardUser(STModel):
    id: int
    name: str | None = None
    external_ids: dict[str, str] = Field(default_factory=dict, alias="externalIds")


class LaborEntry(STModel):
    id: int
    kind: Literal["labor"]
    job: JobRef
    service_line: ServiceLine | None = Field(default=None, alias="serviceLine")
    hours: Decimal
    pay_rate: Decimal | None = Field(default=None, alias="payRate")


class ClockEntry(STModel):
    id: int
    kind: Literal["clock"]
    clock_in: int = Field(alias="clockIn")
    clock_out: int = Field(alias="clockOut")
    job: JobRef | None = None


class GenericEntry(STModel):
    id: int
    kind: Literal["generic"]
    label: str
    hours: Decimal


TimecardEntry = Annotated[LaborEntry | ClockEntry | GenericEntry, Field(discriminator="kind")]


class Timecard(STModel):
    id: int
    status: str
    approved_on: int | None = Field(default=None, alias="approvedOn")
    work_date: int = Field(alias="workDate")
    user: TimecardUser
    entries: list[TimecardEntry] = Field(default_factory=list)
    updated: int | None = None


# --- webhook deliveries (reference §7) ------------------------------------------------------------
class WebhookEntity(BaseModel):
    """The entity an event is about. Strict: ingest refuses what it cannot route."""

    model_config = ConfigDict(extra="ignore", frozen=True, strict=False)

    type: str = Field(min_length=1, max_length=64)
    id: int = Field(ge=1, le=2**63 - 1)
    uri: str | None = Field(default=None, max_length=2048)


class ChangesetEntry(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    field: str
    old_value: Any = Field(default=None, alias="oldValue")
    new_value: Any = Field(default=None, alias="newValue")


class WebhookEvent(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    action: Literal["created", "updated", "deleted"]
    timestamp: int | None = None
    user_id: int | None = Field(default=None, alias="userId")
    entity: WebhookEntity
    changeset: list[ChangesetEntry] | None = None


class WebhookDelivery(BaseModel):
    """One POST from ServiceTrade: a message id and a batch of entity events."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    message_id: str = Field(alias="messageId", min_length=1, max_length=128)
    timestamp: str | int | None = None
    data: list[WebhookEvent] = Field(max_length=5000)
