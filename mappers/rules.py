"""Mapping rules of one Spectrum connection (F10): plain validated data, handed to mappers.

These models are the ``[connections.<name>.*]`` tables of the TOML config. They hold no I/O and no
secrets, so mappers may take them as arguments. Validation errors name the key; the loader in
``worker.settings`` adds the file and the connection.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from clients.spectrum.services import FORBIDDEN_KEY_CHARS


class Rules(BaseModel):
    """Base: unknown keys are an error (a typo must not silently fall back to a default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_key(value: str, what: str) -> str:
    bad = sorted(set(value) & FORBIDDEN_KEY_CHARS)
    if bad:
        raise ValueError(f"{what} {value!r} contains characters Spectrum forbids: {''.join(bad)}")
    return value


class CodeRange(Rules):
    """How record codes are allocated: ``prefix`` + a zero-padded counter in [start, end]."""

    prefix: str = Field(default="", max_length=9)
    start: int = Field(default=1, ge=0)
    end: int = Field(default=99_999, ge=0)
    width: int = Field(default=5, ge=1, le=10)
    max_length: int = Field(default=10, ge=1, le=10)

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        return _check_key(v.upper(), "prefix")

    @model_validator(mode="after")
    def _fits(self) -> CodeRange:
        if self.end < self.start:
            raise ValueError(f"end ({self.end}) is below start ({self.start})")
        longest = len(self.prefix) + max(self.width, len(str(self.end)))
        if longest > self.max_length:
            raise ValueError(
                f"prefix {self.prefix!r} + {max(self.width, len(str(self.end)))} digits makes "
                f"{longest} characters; Spectrum allows {self.max_length}"
            )
        return self

    def format(self, n: int) -> str:
        """The code for counter value ``n``."""
        return f"{self.prefix}{n:0{self.width}d}"


class CustomerRules(Rules):
    codes: CodeRange = CodeRange(prefix="C")
    terms_code: str = Field(default="N", min_length=1, max_length=1)
    sales_tax_code: str = Field(default="EXEMPT", min_length=1, max_length=15)
    cost_center: str = Field(default="", max_length=10)
    #: a stale external id (a code Spectrum does not have): "" = fail and alert; "by_name" =
    #: adopt the Spectrum customer with the same normalised name and address
    adopt: Literal["", "by_name"] = ""


class SiteRules(Rules):
    codes: CodeRange = CodeRange(prefix="S")
    #: as ``customers.adopt``, for WO sites (same name and address, same customer)
    adopt: Literal["", "by_name"] = ""


class TaxRules(Rules):
    """Sales-tax code and tax class selection."""

    default_sales_tax_code: str = Field(default="EXEMPT", max_length=15)
    derive_from_state: bool = False
    sales_tax_by_state: dict[str, str] = Field(default_factory=dict)
    #: invoice tax rate (percent, as text, e.g. "7.25") -> sales-tax code
    sales_tax_by_rate: dict[str, str] = Field(default_factory=dict)
    default_tax_class: str = Field(default="", max_length=15)
    tax_class_by_state: dict[str, str] = Field(default_factory=dict)
    work_state_tax_by_state: dict[str, str] = Field(default_factory=dict)

    @field_validator("sales_tax_by_rate")
    @classmethod
    def _rates(cls, v: dict[str, str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for rate, code in v.items():
            try:
                out[str(Decimal(rate).normalize())] = code
            except Exception as exc:  # noqa: BLE001 - any parse failure is a config error
                raise ValueError(f"sales_tax_by_rate key {rate!r} is not a number") from exc
        return out


class CostCenterRules(Rules):
    codes: list[str] = Field(default_factory=list)
    source: Literal["service_line", "office"] = "service_line"
    by_service_line: dict[str, str] = Field(default_factory=dict)
    by_office: dict[str, str] = Field(default_factory=dict)
    default: str = Field(default="", max_length=10)
    price_method: dict[str, Literal["F", "T", "C", "U"]] = Field(default_factory=dict)
    default_price_method: Literal["F", "T", "C", "U"] = "T"
    gl_account: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_codes(self) -> CostCenterRules:
        if not self.codes:
            return self
        known = set(self.codes)
        for name, mapping in (
            ("by_service_line", self.by_service_line),
            ("by_office", self.by_office),
        ):
            for k, cc in mapping.items():
                if cc not in known:
                    raise ValueError(f"{name}.{k} = {cc!r} is not one of codes {self.codes}")
        for name, keys in (("price_method", self.price_method), ("gl_account", self.gl_account)):
            for cc in keys:
                if cc not in known:
                    raise ValueError(f"{name} key {cc!r} is not one of codes {self.codes}")
        if self.default and self.default not in known:
            raise ValueError(f"default {self.default!r} is not one of codes {self.codes}")
        return self


class JobRules(Rules):
    number_prefix: str = Field(default="T", max_length=9)
    #: ``{prefix}`` and ``{number}`` (the ServiceTrade job number); ``{suffix}`` for multi-CC jobs
    number_format: str = "{prefix}{number}{suffix}"
    multi_cost_center: bool = False
    #: suffix for the n-th cost center of a multi-cost-center job (``{index}``, ``{cost_center}``)
    multi_cost_center_suffix: str = "-{index}"
    job_type_target: Literal["job_type", "contract_type"] = "job_type"
    job_type_map: dict[str, str] = Field(default_factory=dict)
    ignored_types: list[str] = Field(default_factory=list)
    pm_tag_pattern: str = r"^PM:(?P<pm>[A-Za-z0-9_.]{1,15})$"
    office_in_udf1: bool = False
    template_job: str = Field(default="", max_length=10)
    template_cache_s: int = Field(default=3600, ge=0)
    oh_batch_code: str = Field(default="", max_length=10)
    division: str = Field(default="", max_length=5)
    status_code: Literal["A", "I"] = "A"
    #: Spectrum status sent when the ServiceTrade job is completed / canceled ("" = leave it)
    status_on_complete: Literal["", "A", "I", "C"] = ""
    status_on_cancel: Literal["", "A", "I", "C"] = ""

    @field_validator("number_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        return _check_key(v, "number_prefix")

    @field_validator("pm_tag_pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        try:
            compiled = re.compile(v)
        except re.error as exc:
            raise ValueError(f"pm_tag_pattern is not a regular expression: {exc}") from exc
        if "pm" not in compiled.groupindex:
            raise ValueError("pm_tag_pattern needs a named group (?P<pm>...)")
        return v

    @field_validator("number_format")
    @classmethod
    def _format(cls, v: str) -> str:
        try:
            v.format(prefix="", number=1, suffix="")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"number_format {v!r} may use only {{prefix}}, {{number}}, {{suffix}}"
            ) from exc
        return v


class WorkOrderRules(Rules):
    """Legacy work-order mode (F4)."""

    leading_character: str = Field(default="", max_length=1)
    wo_type: str = Field(default="", max_length=5)
    lead_source: str = Field(default="", max_length=15)
    price_type: Literal["", "F", "T"] = ""
    #: ServiceTrade contract id -> Spectrum contract number
    contract_map: dict[str, str] = Field(default_factory=dict)
    #: re-send a sent work order automatically when its job changes in ServiceTrade
    resend_on_update: bool = False


class DateWindow(Rules):
    """A Spectrum processing-date window (AR or PR). Empty bounds mean open."""

    start: date | None = None
    end: date | None = None

    def contains(self, d: date) -> bool:
        return (self.start is None or d >= self.start) and (self.end is None or d <= self.end)

    def describe(self) -> str:
        return f"{self.start or '...'} to {self.end or '...'}"


class InvoiceRules(Rules):
    job_resolution: Literal["job", "location"] = "job"
    gl_routing: Literal["cost_center", "job_type"] = "cost_center"
    job_type_gl: dict[str, str] = Field(default_factory=dict)
    number_prefix: str = Field(default="", max_length=9)
    credit_memo_prefix: str = Field(default="C", max_length=9)
    void_prefix: str = Field(default="V", max_length=9)
    #: strftime pattern applied to the invoice date, at most 10 characters once formatted
    batch_code_format: str = "ST%y%m%d"
    processing_window: DateWindow = DateWindow()
    require_salesperson: bool = True
    salesperson_map: dict[str, str] = Field(default_factory=dict)
    #: reversal of a credit memo (a debit invoice: void or rebill of a split invoice's credit half)
    debit_prefix: str = Field(default="D", max_length=9)
    #: Spectrum number base when ServiceTrade has no usable ``invoiceNumber`` (null, blank, too
    #: long, forbidden characters): a ledger counter like customer codes. None: the ServiceTrade id.
    numbers: CodeRange | None = None
    #: an invoice approved again with other lines/amounts/tax/customer/job than Spectrum holds
    on_change_after_posting: Literal["rebill", "alert"] = "rebill"

    @model_validator(mode="after")
    def _numbers_fit(self) -> InvoiceRules:
        prefixes = (
            self.number_prefix,
            self.credit_memo_prefix,
            self.void_prefix,
            self.debit_prefix,
        )
        for p in prefixes:
            _check_key(p, "prefix")
            if "-" in p:
                raise ValueError(f"prefix {p!r}: '-' is kept for revision suffixes")
        if len(set(prefixes)) != len(prefixes):
            raise ValueError(
                "number_prefix, credit_memo_prefix, void_prefix and debit_prefix must differ "
                f"(got {prefixes}): each kind of document needs its own numbers"
            )
        if self.numbers is not None:
            if "-" in self.numbers.prefix:
                raise ValueError("numbers.prefix: '-' is kept for revision suffixes")
            digits = max(self.numbers.width, len(str(self.numbers.end)))
            longest = max(map(len, prefixes)) + len(self.numbers.prefix) + digits + 3
            if longest > 10:
                raise ValueError(
                    f"numbers: the longest document prefix + numbers.prefix "
                    f"{self.numbers.prefix!r} + {digits} digits + 3 for a revision suffix "
                    f"makes {longest} characters; Spectrum allows 10"
                )
        return self


class TimecardRules(Rules):
    #: strftime pattern applied to the week-ending date, at most 8 characters once formatted
    batch_code_format: str = "%Y%m%d"
    week_ends_on: Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"] = "sun"
    regular_pay_type: str = Field(default="R", max_length=10)
    #: generic entry label -> pay type (``PTO = "V"``)
    pay_types: dict[str, str] = Field(default_factory=dict)
    phase_by_service_line: dict[str, str] = Field(default_factory=dict)
    default_phase: str = Field(default="", max_length=20)
    cost_type: str = Field(default="L", max_length=3)
    department_by_office: dict[str, str] = Field(default_factory=dict)
    default_department: str = Field(default="", max_length=6)
    #: ServiceTrade user id -> Spectrum employee code (fallback to the user's externalIds)
    employee_map: dict[str, str] = Field(default_factory=dict)
    clock_rounding_minutes: int = Field(default=0, ge=0, le=60)
    clock_rounding: Literal["nearest", "up", "down"] = "nearest"
    processing_window: DateWindow = DateWindow()
    #: pay rate sent as an amount (``Pay_Rate``) or not at all (Spectrum uses the employee's rate)
    send_pay_rate: bool = True
    #: time on a job stsync does not send to Spectrum (ignored type, canceled, work-order mode):
    #: "" = the entry fails naming this key; "skip" = left out of payroll (recorded skipped);
    #: "overhead" = posted to ``overhead_job`` / ``overhead_phase`` / ``overhead_cost_center``
    unsynced_job_labor: Literal["", "skip", "overhead"] = ""
    overhead_job: str = Field(default="", max_length=10)
    overhead_phase: str = Field(default="", max_length=20)
    overhead_cost_center: str = Field(default="", max_length=10)

    @model_validator(mode="after")
    def _overhead_job_given(self) -> TimecardRules:
        if self.unsynced_job_labor == "overhead" and not self.overhead_job:
            raise ValueError(
                'unsynced_job_labor = "overhead" needs overhead_job (the Spectrum job to post to)'
            )
        return self


class PurchaseOrderRules(Rules):
    #: ``"<phase>/<cost type>"`` or ``"<phase>"`` -> ServiceTrade service line id
    service_line_by_phase: dict[str, int] = Field(default_factory=dict)
    #: Spectrum item code -> ServiceTrade lib item id (fallback after matching lib item ``code``)
    lib_item_by_item_code: dict[str, int] = Field(default_factory=dict)
    default_service_line_id: int | None = None
    default_lib_item_id: int | None = None
    closed_lines: Literal["leave", "zero", "remove"] = "leave"
    page_size: int = Field(default=500, ge=1, le=10_000)
    overlap_s: int = Field(default=300, ge=0)


class ConnectionRules(Rules):
    """Everything one connection's mappers need."""

    company_code: str = Field(min_length=1, max_length=3)
    mode: Literal["jc", "work_order"] = "jc"
    customers: CustomerRules = CustomerRules()
    sites: SiteRules = SiteRules()
    tax: TaxRules = TaxRules()
    cost_centers: CostCenterRules = CostCenterRules()
    jobs: JobRules = JobRules()
    work_orders: WorkOrderRules = WorkOrderRules()
    invoices: InvoiceRules = InvoiceRules()
    timecards: TimecardRules = TimecardRules()
    purchase_orders: PurchaseOrderRules = PurchaseOrderRules()

    @field_validator("company_code")
    @classmethod
    def _company(cls, v: str) -> str:
        return _check_key(v, "company_code")


# --- routing between several Spectrum companies (F24) ---------------------------------------------
class Route(Rules):
    """``[connections.<name>] route = {...}``: which records an automatic connection takes.

    A record matches when it matches *every* key given (an empty route matches nothing given
    and is refused). Within a key any listed value will do. Values compare without regard to
    case and spaces; offices and regions match by ServiceTrade id or name; states are two-letter
    codes; tags are tag names.
    """

    offices: list[str] = Field(default_factory=list)
    regions: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    states: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _not_empty(self) -> Route:
        if not (self.offices or self.regions or self.tags or self.states):
            raise ValueError("route needs at least one of offices, regions, tags, states")
        return self


#: keys whose record has one value (an office, a region, a state): two disjoint lists never meet
SINGLE_VALUED_ROUTE_KEYS = ("offices", "regions", "states")


def _fold(value: object) -> str:
    return "".join(str(value).split()).upper()


@dataclass(frozen=True)
class RouteFacts:
    """What routing looks at on a record (from its job, location and office)."""

    offices: frozenset[str] = frozenset()  # ids and names
    regions: frozenset[str] = frozenset()
    tags: frozenset[str] = frozenset()
    state: str = ""


def route_facts(
    *,
    offices: Iterable[object] = (),
    regions: Iterable[object] = (),
    tags: Iterable[object] = (),
    state: str | None = None,
) -> RouteFacts:
    return RouteFacts(
        frozenset(_fold(o) for o in offices if o not in (None, "")),
        frozenset(_fold(r) for r in regions if r not in (None, "")),
        frozenset(_fold(t) for t in tags if t not in (None, "")),
        _fold(state or ""),
    )


def route_mismatch(route: Route, facts: RouteFacts) -> str | None:
    """Why a record with ``facts`` does not match ``route`` (the first key that fails), or None."""
    checks: tuple[tuple[str, list[str], frozenset[str]], ...] = (
        ("offices", route.offices, facts.offices),
        ("regions", route.regions, facts.regions),
        ("tags", route.tags, facts.tags),
        ("states", route.states, frozenset({facts.state}) - {""}),
    )
    for name, wanted, have in checks:
        if wanted and not {_fold(w) for w in wanted} & have:
            shown = ", ".join(sorted(have)) or "none"
            return f"{name} {wanted} do not include the record's ({shown})"
    return None


def routes_overlap(a: Route, b: Route) -> str | None:
    """Why the config itself lets one record match both routes, or None.

    Shown by the config: both routes use the same keys, and for every key they share a value.
    (Routes on different keys may still meet on a record; that is found when it happens.)
    """
    keys = [k for k in ("offices", "regions", "tags", "states") if getattr(a, k) or getattr(b, k)]
    if any(not getattr(a, k) or not getattr(b, k) for k in keys):
        return None
    shared: list[str] = []
    for k in keys:
        common = {_fold(v) for v in getattr(a, k)} & {_fold(v) for v in getattr(b, k)}
        if not common:
            return None
        shared.append(f"{k} {sorted(common)}")
    return "both name " + " and ".join(shared)
