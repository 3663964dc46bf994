"""Seed data for both simulators: one deterministic, scalable world matching ``sandbox/demo.toml``.

``build_world(spec)`` is pure: the same ``SeedSpec`` always gives an identical ``SeedWorld`` (one
``random.Random(spec.seed)``, no clock, no set iteration, no ``hash()``). The ServiceTrade half is a
mapping of singular resource name -> JSON objects as the API returns them (``STState.load``); the
Spectrum half is a mapping of Info-Link table name -> rows (``SpectrumDB.load``).

What the world always contains (the demo and the tests rely on it):

- the account's own vendor company and its two offices, locations 11 "Durham Office" and 12
  "Charlotte Office" (``demo.toml`` maps offices 11 and 12);
- service lines 5 SP, 6 FA, 7 EX (mapped) and 8 KS (unmapped, used rarely);
- lib items whose codes equal the item codes on Spectrum purchase-order lines;
- technicians with ``externalIds.spectrum`` = an employee code that exists in Spectrum, and exactly
  one technician without; salespeople with a Spectrum salesperson code, and exactly one without;
- customers in NC, SC and VA; the first is "O'Brien & Sons, Inc." with three locations (NC, VA, SC);
- the first six jobs are fixed special cases (see ``_FORCED_JOBS``): an ignored ``administrative``
  job, a mixed-sign invoice, a ``void`` invoice, an invoice whose job's salesperson has no Spectrum
  id, and one pending invoice at each tax rate 7.0 / 5.3 / 6.0;
- approved timecards for every technician and day, with labor, clock and generic (PTO, Holiday)
  entries;
- on the Spectrum side, company ``ABC`` reference data exactly as ``demo.toml`` names it, the
  ``TEMPLATE`` job with phases 100/200/300 x cost types L and M, employees, salespersons, vendors
  and purchase orders on ``"T" + job number`` (the jobs the sync will create), including a line
  with an unknown item code and a closed line; a little reference data for company ``XYZ``.

Purchase-order key and text columns are padded with trailing spaces to their ``CHAR`` width, as real
Info-Link returns them, so that readers must trim. ``Date_Modified`` is a naive datetime in the
account's local time (``spec.timezone``), as a SQL Server ``datetime`` filled by ``GETDATE()`` is.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import String, Table

from clients.spectrum import infolink_schema as il
from sandbox.credentials import ST_USERNAME

#: 2026-11-16 00:00 America/New_York (a Monday): the first timecard day, "last week" for the demo.
DEFAULT_START = 1_794_805_200

#: Singular resource names ``STState.load`` accepts, in a stable order.
ST_RESOURCES: tuple[str, ...] = (
    "company",
    "location",
    "job",
    "invoice",
    "user",
    "serviceline",
    "libitem",
    "jobitem",
    "timecard",
    "clockevent",
    "comment",
    "tag",
    "webhook",
)

SPECTRUM_COMPANY = "ABC"
SPECTRUM_COMPANY_2 = "XYZ"
TEMPLATE_JOB = "TEMPLATE"
OFFICE_DURHAM = 11
OFFICE_CHARLOTTE = 12
JOB_NUMBER_START = 52_001
PO_NUMBER_START = 26_001
SMALL_ID_BASE = 1_001
#: 16-digit ids (real ServiceTrade ids reach ~2.7e15), still below 2**53 so JSON numbers stay exact.
BIG_ID_BASE = 2_687_264_638_045_377
#: An item code that exists on a Spectrum PO line but matches no ServiceTrade lib item.
UNKNOWN_ITEM_CODE = "VALVE-OSY4"
#: A Spectrum job that did not come from ServiceTrade (a construction job with a PO).
FOREIGN_JOB = "24-404E1"

CENT = Decimal("0.01")
_DAY = 86_400


@dataclass(frozen=True)
class SeedSpec:
    """How big the world is and where it starts. Everything else follows from ``seed``."""

    seed: int = 42
    #: customer companies; each gets 1..3 locations (the first always 3)
    companies: int = 5
    jobs_per_location: int = 2
    #: share of completed jobs (beyond the fixed special cases) that get a pending invoice
    invoices_fraction: float = 0.6
    #: approved timecards: one per technician per day, for this many consecutive days
    timecard_days: int = 5
    #: technicians; the last one has no Spectrum id
    techs: int = 4
    #: unix seconds of the first timecard day at local midnight
    start: int = DEFAULT_START
    #: 16-digit ServiceTrade ids (offices 11/12 and service lines 5..8 keep theirs: demo.toml
    #: maps them)
    big_ids: bool = False
    timezone: str = "America/New_York"
    #: used to build each record's absolute ``uri``
    st_base_url: str = "http://127.0.0.1:8801"

    def __post_init__(self) -> None:
        checks = (
            ("companies", self.companies >= 1, "must be at least 1"),
            ("jobs_per_location", self.jobs_per_location >= 1, "must be at least 1"),
            ("invoices_fraction", 0.0 <= self.invoices_fraction <= 1.0, "must be in [0, 1]"),
            ("timecard_days", self.timecard_days >= 0, "must not be negative"),
            ("techs", self.techs >= 2, "must be at least 2 (one technician has no Spectrum id)"),
            ("techs", self.techs <= 999, "must be at most 999 (employee codes E001..E999)"),
        )
        for name, ok, why in checks:
            if not ok:
                raise ValueError(f"SeedSpec.{name} = {getattr(self, name)!r} {why}")
        ZoneInfo(self.timezone)  # an unknown zone fails here, naming itself


@dataclass(frozen=True)
class SeedWorld:
    """The seeded state of both systems."""

    #: singular resource name -> JSON objects (``STState.load``)
    servicetrade: dict[str, list[dict[str, Any]]]
    #: Info-Link table name -> rows (``SpectrumDB.load``)
    spectrum: dict[str, list[dict[str, Any]]]
    #: ids of the special cases, so demos and tests need not search (``"void_invoice"`` ...)
    landmarks: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, int]:
        """Record counts: ServiceTrade resources, customers and ``spectrum.<table>`` rows."""
        out: dict[str, int] = {name: len(items) for name, items in self.servicetrade.items()}
        out["customers"] = sum(1 for c in self.servicetrade["company"] if c.get("isCustomer"))
        out["purchase_orders"] = len(self.spectrum.get(il.po_headers.name, []))
        out["po_lines"] = len(self.spectrum.get(il.po_details.name, []))
        for table, rows in self.spectrum.items():
            out[f"spectrum.{table}"] = len(rows)
        return out


# --- fixed reference data -----------------------------------------------------------------------
@dataclass(frozen=True)
class _Line:
    id: int
    name: str
    abbr: str
    phase: str  # Spectrum phase / cost center this service line maps to (demo.toml)


_SERVICE_LINES: tuple[_Line, ...] = (
    _Line(5, "Sprinkler", "SP", "100"),
    _Line(6, "Fire Alarm", "FA", "200"),
    _Line(7, "Extinguishers", "EX", "300"),
    _Line(8, "Kitchen Suppression", "KS", "100"),  # unmapped in demo.toml on purpose
)
_LINE_BY_ABBR = {sl.abbr: sl for sl in _SERVICE_LINES}
_LINE_WEIGHTS = (("SP", 45), ("FA", 30), ("EX", 22), ("KS", 3))


@dataclass(frozen=True)
class _Lib:
    code: str
    name: str
    type: str
    line: str | None
    price: Decimal  # ServiceTrade sell price
    cost: Decimal  # Spectrum PO unit price (four decimals, as Info-Link stores it)


_D = Decimal
_LIB_ITEMS: tuple[_Lib, ...] = (
    _Lib("SPK-HEAD", "Sprinkler head, pendent 155F", "part", "SP", _D("18.75"), _D("7.4250")),
    _Lib("PIPE-1IN", "Sch 40 steel pipe 1in (ft)", "part", "SP", _D("6.40"), _D("2.8125")),
    _Lib("SPK-COUPLING", "Grooved coupling 1in", "part", "SP", _D("12.10"), _D("4.9500")),
    _Lib("LAB-SP", "Sprinkler labor", "labor", "SP", _D("110.00"), _D("0")),
    _Lib("FA-PULL", "Pull station, dual action", "part", "FA", _D("64.00"), _D("28.5000")),
    _Lib("FA-SMOKE", "Photoelectric smoke detector", "part", "FA", _D("48.50"), _D("19.9900")),
    _Lib("LAB-FA", "Fire alarm labor", "labor", "FA", _D("120.00"), _D("0")),
    _Lib("EXT-10LB", "10 lb ABC extinguisher", "part", "EX", _D("89.00"), _D("41.2500")),
    _Lib("EXT-RECHG", "Extinguisher recharge", "service", "EX", _D("24.00"), _D("8.0000")),
    _Lib("LAB-EX", "Extinguisher labor", "labor", "EX", _D("85.00"), _D("0")),
    _Lib("KS-NOZZLE", "Kitchen suppression nozzle", "part", "KS", _D("72.00"), _D("30.1000")),
    _Lib("LAB-KS", "Kitchen suppression labor", "labor", "KS", _D("115.00"), _D("0")),
    _Lib("DISC", "Discount", "misc", None, _D("0"), _D("0")),
)

#: state -> sales tax rate in percent (demo.toml sales_tax_by_rate)
_TAX_RATE = {"NC": Decimal("7.0"), "SC": Decimal("6.0"), "VA": Decimal("5.3")}


@dataclass(frozen=True)
class _City:
    city: str
    state: str
    zip: str
    area: str
    office: int


_CITIES: tuple[_City, ...] = (
    _City("Durham", "NC", "27701", "919", OFFICE_DURHAM),
    _City("Raleigh", "NC", "27601", "919", OFFICE_DURHAM),
    _City("Greensboro", "NC", "27401", "336", OFFICE_DURHAM),
    _City("Wilmington", "NC", "28401", "910", OFFICE_DURHAM),
    _City("Charlotte", "NC", "28202", "704", OFFICE_CHARLOTTE),
    _City("Asheville", "NC", "28801", "828", OFFICE_CHARLOTTE),
    _City("Concord", "NC", "28025", "704", OFFICE_CHARLOTTE),
    _City("Columbia", "SC", "29201", "803", OFFICE_CHARLOTTE),
    _City("Greenville", "SC", "29601", "864", OFFICE_CHARLOTTE),
    _City("Rock Hill", "SC", "29730", "803", OFFICE_CHARLOTTE),
    _City("Charleston", "SC", "29401", "843", OFFICE_CHARLOTTE),
    _City("Richmond", "VA", "23219", "804", OFFICE_DURHAM),
    _City("Norfolk", "VA", "23510", "757", OFFICE_DURHAM),
    _City("Roanoke", "VA", "24011", "540", OFFICE_DURHAM),
    _City("Danville", "VA", "24541", "434", OFFICE_DURHAM),
)
_CITIES_BY_STATE = {s: [c for c in _CITIES if c.state == s] for s in ("NC", "SC", "VA")}
_STATE_WEIGHTS = (("NC", 50), ("SC", 25), ("VA", 25))

_STREETS = (
    "Main St",
    "W. Franklin St",
    "Hillsborough St",
    "N. Tryon St",
    "King St",
    "Broad St",
    "Commerce Dr",
    "Industrial Blvd",
    "Peachtree Rd",
    "Research Triangle Parkway, Suite 300",  # with the number: over 30 characters
    "Old Wake Forest Rd",
    "E. Main St Bldg 4",
)
_NAME_HEADS = (
    "Carolina",
    "Blue Ridge",
    "Piedmont",
    "Tidewater",
    "Old Dominion",
    "Palmetto",
    "Catawba",
    "Neuse River",
    "Cape Fear",
    "Shenandoah",
    "Triangle",
    "Lowcountry",
    "Burger Bistro",
    "Magnolia",
    "Riverside",
)
_NAME_KINDS = (
    "Medical Center",
    "Apartments",
    "Self Storage",
    "Hotel Group",
    "Bakery",
    "Schools",
    "Foods",
    "Logistics",
    "Baptist Church",
    "Dental Group",
    "Auto Care",
    "Brewing Co.",
)
_NAME_TAILS = ("", " Inc.", " LLC", ", Inc.", " & Co.", " Corp.", ", LLC")
#: The first customers: punctuation, non-ASCII, forbidden key characters and an over-long name.
_SPECIAL_NAMES = (
    "O'Brien & Sons, Inc.",
    'Café Olé #5 "Downtown"',
    "Smith/Jones Properties",
    "The Very Long Name Hospitality Management Company LLC",
)

_TECH_NAMES = (
    ("Sam", "Tech"),
    ("Jordan", "Reyes"),
    ("Casey", "Nguyen"),
    ("Riley", "Okafor"),
    ("Morgan", "Patel"),
    ("Avery", "Brooks"),
    ("Quinn", "Mbeki"),
    ("Drew", "Castillo"),
)
_SALES = (("Dana", "Whitfield", "S01"), ("Lee", "Harmon", "S02"), ("Kim", "Alvarez", "S03"))
_SALES_WITHOUT_ID = ("Chris", "Doyle")
_PM_TAGS = ("PM:JSMITH", "PM:AKIM", "PM:RLOPEZ")
_OTHER_TAGS = ("vip", "after-hours", "PM:J-SMITH")  # the last does not match pm_tag_pattern

_TYPE_WEIGHTS = (
    ("inspection", 30),
    ("repair", 20),
    ("service_call", 20),
    ("installation", 10),
    ("preventative_maintenance", 17),
    ("administrative", 3),
)
_STATUS_WEIGHTS = (("completed", 50), ("scheduled", 35), ("new", 12), ("canceled", 3))
_TYPE_LABEL = {
    "inspection": "Annual Inspection",
    "repair": "Repair",
    "service_call": "Service Call",
    "installation": "Installation",
    "preventative_maintenance": "Preventative Maintenance",
    "administrative": "Office Visit",
}


@dataclass(frozen=True)
class _Forced:
    type: str
    status: str
    line: str
    sales: int  # index into the salespeople; -1 = the one without a Spectrum id
    invoice: str  # "" none, "normal", "mixed", "void"
    landmark: str


#: The first jobs of the world, in order; they sit on the first customer's three locations
#: (NC Durham, VA Richmond, SC Rock Hill with the default two jobs per location).
_FORCED_JOBS: tuple[_Forced, ...] = (
    _Forced("inspection", "completed", "SP", 0, "normal", "invoice_nc"),
    _Forced("repair", "completed", "FA", 1, "mixed", "mixed_sign_invoice"),
    _Forced("service_call", "completed", "EX", 2, "void", "void_invoice"),
    _Forced("installation", "completed", "SP", -1, "normal", "invoice_salesperson_without_id"),
    _Forced("administrative", "scheduled", "SP", 0, "", "administrative_job"),
    _Forced("preventative_maintenance", "completed", "FA", 1, "normal", "invoice_sc"),
)
_FIRST_CUSTOMER_CITIES = ("Durham", "Richmond", "Rock Hill")


# --- helpers ------------------------------------------------------------------------------------
class _Ids:
    """One id sequence for every generated ServiceTrade record (like a shared database sequence)."""

    def __init__(self, big: bool) -> None:
        self._next = BIG_ID_BASE if big else SMALL_ID_BASE

    def __call__(self) -> int:
        n = self._next
        self._next += 1
        return n


def _pick(rng: random.Random, weighted: Sequence[tuple[str, int]]) -> str:
    return rng.choices([k for k, _ in weighted], weights=[w for _, w in weighted])[0]


def _money(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def _num(value: Decimal) -> float:
    """A JSON number for a Decimal that is exact in two (or a few) decimals."""
    return float(value)


def _pad(table: Table, column: str, value: str) -> str:
    """``value`` right-padded with spaces to the column's CHAR width (Info-Link style)."""
    col_type = table.c[column].type
    width = col_type.length if isinstance(col_type, String) and col_type.length else len(value)
    if len(value) > width:
        raise ValueError(f"{table.name}.{column}: {value!r} is longer than {width}")
    return value.ljust(width)


class _Builder:
    """Builds one world; holds the running state so helpers stay short."""

    def __init__(self, spec: SeedSpec) -> None:
        self.spec = spec
        self.rng = random.Random(spec.seed)
        self.ids = _Ids(spec.big_ids)
        self.tz = ZoneInfo(spec.timezone)
        self.api = spec.st_base_url.rstrip("/") + "/api"
        self.st: dict[str, list[dict[str, Any]]] = {name: [] for name in ST_RESOURCES}
        self.sp: dict[str, list[dict[str, Any]]] = {}
        self.landmarks: dict[str, int] = {}
        self.lib_by_code: dict[str, dict[str, Any]] = {}
        self.tags: dict[str, dict[str, Any]] = {}
        self.offices: dict[int, dict[str, Any]] = {}
        self.techs: list[dict[str, Any]] = []
        self.sales: list[dict[str, Any]] = []  # with Spectrum id first, then the one without
        self.vendor: dict[str, Any] = {}
        self.owner: dict[str, Any] = {}
        self.next_job_number = JOB_NUMBER_START
        self.next_po_number = PO_NUMBER_START

    # -- small shapes ------------------------------------------------------------------------
    def uri(self, resource: str, id_: int) -> str:
        return f"{self.api}/{resource}/{id_}"

    def ref(self, resource: str, obj: Mapping[str, Any]) -> dict[str, Any]:
        return {"id": obj["id"], "uri": self.uri(resource, obj["id"]), "name": obj["name"]}

    def local_date(self, ts: int) -> date:
        return datetime.fromtimestamp(ts, self.tz).date()

    def midnight(self, d: date) -> int:
        return int(datetime(d.year, d.month, d.day, tzinfo=self.tz).timestamp())

    def phone(self, city: _City) -> str:
        n = self.rng.randrange(100, 10_000)
        style = self.rng.randrange(5)
        if style == 0:
            return f"({city.area}) 555-{n:04d}"
        if style == 1:
            return f"{city.area}-555-{n:04d}"
        if style == 2:
            return f"{city.area}.555.{n:04d}"
        if style == 3:
            return f"+1 {city.area} 555 {n:04d}"
        return f"({city.area}) 555-{n:04d} ext. {self.rng.randrange(10, 99)}"

    def address(self, city: _City) -> dict[str, Any]:
        street = f"{self.rng.randrange(1, 9999)} {self.rng.choice(_STREETS)}"
        return {"street": street, "city": city.city, "state": city.state, "postalCode": city.zip}

    def line_ref(self, abbr: str) -> dict[str, Any]:
        sl = _LINE_BY_ABBR[abbr]
        return {
            "id": sl.id,
            "uri": self.uri("serviceline", sl.id),
            "name": sl.name,
            "abbr": sl.abbr,
        }

    # -- ServiceTrade: account, catalog, people ----------------------------------------------
    def account(self) -> None:
        created = self.spec.start - 400 * _DAY
        durham = _CITIES[0]
        self.vendor = {
            "id": self.ids(),
            "name": "Acme Fire Protection",
            "status": "active",
            "refNumber": None,
            "isCustomer": False,
            "isVendor": True,
            "isPartsVendor": False,
            "isPrimeContractor": False,
            "address": {
                "street": "800 W. Main St",
                "city": "Durham",
                "state": "NC",
                "postalCode": "27701",
            },
            "phone": "(919) 555-0100",
            "externalIds": {},
            "created": created,
            "updated": created,
        }
        self.vendor["uri"] = self.uri("company", self.vendor["id"])
        self.st["company"].append(self.vendor)
        for office_id, name, street, city in (
            (OFFICE_DURHAM, "Durham Office", "800 W. Main St", durham),
            (OFFICE_CHARLOTTE, "Charlotte Office", "1200 S. Tryon St", _CITIES[4]),
        ):
            office: dict[str, Any] = {
                "id": office_id,
                "uri": self.uri("location", office_id),
                "name": name,
                "refNumber": None,
                "address": {
                    "street": street,
                    "city": city.city,
                    "state": city.state,
                    "postalCode": city.zip,
                },
                "phoneNumber": f"({city.area}) 555-0100",
                "email": f"{city.city.lower()}@acme-fire.example",
                "company": self.ref("company", self.vendor),
                "taxable": False,
                "status": "active",
                "offices": [],
                "externalIds": {},
                "created": created,
                "updated": created,
            }
            office["offices"] = [self.ref("location", office)]
            self.offices[office_id] = office
            self.st["location"].append(office)

    def catalog(self) -> None:
        for sl in _SERVICE_LINES:
            self.st["serviceline"].append(
                {
                    "id": sl.id,
                    "uri": self.uri("serviceline", sl.id),
                    "name": sl.name,
                    "trade": "Fire Protection",
                    "abbr": sl.abbr,
                    "icon": None,
                }
            )
        for lib in _LIB_ITEMS:
            item: dict[str, Any] = {
                "id": self.ids(),
                "name": lib.name,
                "code": lib.code,
                "type": lib.type,
                "isGeneric": lib.line is None,
                "serviceLine": self.line_ref(lib.line) if lib.line else None,
                "externalIds": {},
            }
            item["uri"] = self.uri("libitem", item["id"])
            self.lib_by_code[lib.code] = item
            self.st["libitem"].append(item)
        for name in _PM_TAGS + _OTHER_TAGS:
            tag = {"id": self.ids(), "name": name}
            self.tags[name] = tag
            self.st["tag"].append(tag)

    def user(
        self, first: str, last: str, *, spectrum: str | None, office: int, tech: bool, sales: bool
    ) -> dict[str, Any]:
        u: dict[str, Any] = {
            "id": self.ids(),
            "name": f"{first} {last}",
            "firstName": first,
            "lastName": last,
            "email": f"{first.lower()}.{last.lower()}@acme-fire.example",
            "status": "active",
            "isTech": tech,
            "isSales": sales,
            "offices": [self.ref("location", self.offices[office])],
            "externalIds": {"spectrum": spectrum} if spectrum else {},
        }
        u["uri"] = self.uri("user", u["id"])
        self.st["user"].append(u)
        return u

    def people(self) -> None:
        self.owner = self.user(
            "Pat", "Office", spectrum=None, office=OFFICE_DURHAM, tech=False, sales=False
        )
        # the API login's own user: changes made through the API carry its id as webhook userId
        api = self.user(
            "API", "Integration", spectrum=None, office=OFFICE_DURHAM, tech=False, sales=False
        )
        api["email"] = ST_USERNAME
        for i in range(self.spec.techs):
            first, last = _TECH_NAMES[i % len(_TECH_NAMES)]
            if i >= len(_TECH_NAMES):
                last = f"{last}{i // len(_TECH_NAMES) + 1}"
            with_id = i < self.spec.techs - 1
            office = OFFICE_DURHAM if i % 2 == 0 else OFFICE_CHARLOTTE
            self.techs.append(
                self.user(
                    first,
                    last,
                    spectrum=f"E{i + 1:03d}" if with_id else None,
                    office=office,
                    tech=True,
                    sales=False,
                )
            )
        self.landmarks["tech_without_spectrum_id"] = self.techs[-1]["id"]
        for i, (first, last, code) in enumerate(_SALES):
            office = OFFICE_DURHAM if i % 2 == 0 else OFFICE_CHARLOTTE
            self.sales.append(
                self.user(first, last, spectrum=code, office=office, tech=False, sales=True)
            )
        self.sales.append(
            self.user(
                *_SALES_WITHOUT_ID, spectrum=None, office=OFFICE_DURHAM, tech=False, sales=True
            )
        )
        self.landmarks["salesperson_without_spectrum_id"] = self.sales[-1]["id"]

    # -- ServiceTrade: customers, locations, jobs, invoices ----------------------------------
    def company_name(self, index: int) -> str:
        if index < len(_SPECIAL_NAMES):
            return _SPECIAL_NAMES[index]
        head = self.rng.choice(_NAME_HEADS)
        kind = self.rng.choice(_NAME_KINDS)
        return f"{head} {kind}{self.rng.choice(_NAME_TAILS)}"

    def customers(self) -> None:
        jobs_done = 0
        for ci in range(self.spec.companies):
            if ci == 0:
                cities = [next(c for c in _CITIES if c.city == n) for n in _FIRST_CUSTOMER_CITIES]
            else:
                state = _pick(self.rng, _STATE_WEIGHTS)
                home = self.rng.choice(_CITIES_BY_STATE[state])
                cities = [home]
                for _ in range(self.rng.randrange(0, 3)):
                    # most sites are in the customer's state; some cross a state line
                    other = state if self.rng.random() < 0.85 else _pick(self.rng, _STATE_WEIGHTS)
                    cities.append(self.rng.choice(_CITIES_BY_STATE[other]))
            company = self.company(ci, cities[0])
            for li, city in enumerate(cities):
                location = self.location(
                    company, li, city, taxable=ci == 0 or self.rng.random() >= 0.08
                )
                for _ in range(self.spec.jobs_per_location):
                    forced = _FORCED_JOBS[jobs_done] if jobs_done < len(_FORCED_JOBS) else None
                    self.job(company, location, forced)
                    jobs_done += 1

    def company(self, index: int, city: _City) -> dict[str, Any]:
        created = self.spec.start - self.rng.randrange(30, 300) * _DAY
        c: dict[str, Any] = {
            "id": self.ids(),
            "name": self.company_name(index),
            "status": "active",
            "refNumber": None,
            "isCustomer": True,
            "isVendor": False,
            "isPartsVendor": False,
            "isPrimeContractor": False,
            "address": self.address(city),
            "phone": self.phone(city),
            "externalIds": {},
            "created": created,
            "updated": created,
        }
        c["uri"] = self.uri("company", c["id"])
        self.st["company"].append(c)
        return c

    def location(
        self, company: dict[str, Any], index: int, city: _City, *, taxable: bool
    ) -> dict[str, Any]:
        created = company["created"] + self.rng.randrange(0, 20) * _DAY
        short = company["name"].split(",")[0]
        loc: dict[str, Any] = {
            "id": self.ids(),
            "name": f"{short} #{index + 1} {city.city}",
            "refNumber": None,
            "address": self.address(city),
            "phoneNumber": self.phone(city),
            "email": None,
            "company": self.ref("company", company),
            "taxable": taxable,
            "status": "active",
            "offices": [self.ref("location", self.offices[city.office])],
            "externalIds": {},
            "created": created,
            "updated": created,
        }
        loc["uri"] = self.uri("location", loc["id"])
        self.st["location"].append(loc)
        return loc

    def job(self, company: dict[str, Any], loc: dict[str, Any], forced: _Forced | None) -> None:
        rng, start = self.rng, self.spec.start
        if forced:
            jtype, status, line = forced.type, forced.status, forced.line
            sales = self.sales[forced.sales]
        else:
            jtype = _pick(rng, _TYPE_WEIGHTS)
            status = _pick(rng, _STATUS_WEIGHTS)
            line = _pick(rng, _LINE_WEIGHTS)
            # about one job in twenty is sold by the salesperson who has no Spectrum id
            sales = self.sales[-1] if rng.random() < 0.05 else rng.choice(self.sales[:-1])
        number = self.next_job_number
        self.next_job_number += 1
        created = start - rng.randrange(15, 60) * _DAY
        completed = (
            start - 7 * _DAY + rng.randrange(0, 11) * _DAY + rng.randrange(8, 16) * 3600
            if status == "completed"
            else None
        )
        scheduled = completed or start + rng.randrange(1, 30) * _DAY + 8 * 3600
        tags = []
        if rng.random() < 0.35 or number == JOB_NUMBER_START:
            tags.append(self.tags[_PM_TAGS[number % len(_PM_TAGS)]])
        if rng.random() < 0.1:
            tags.append(self.tags[rng.choice(_OTHER_TAGS)])
        po_roll = rng.random()
        customer_po = None
        if po_roll < 0.05:
            customer_po = f"BLANKET-2026-FIRE-PROTECTION-{number}"  # longer than Spectrum's 25
        elif po_roll < 0.45:
            customer_po = f"PO-{rng.randrange(1000, 99999)}"
        office = self.offices[loc["offices"][0]["id"]]
        label = _TYPE_LABEL[jtype]
        job: dict[str, Any] = {
            "id": self.ids(),
            "number": number,
            "name": f"{label} - {loc['name']}",
            "customName": None,
            "type": jtype,
            "status": status,
            "description": f"{label} ({_LINE_BY_ABBR[line].name.lower()}) at {loc['name']}",
            "customerPo": customer_po,
            "refNumber": None,
            "estimatedPrice": float(rng.randrange(150, 4000)),
            "dueBy": scheduled + 7 * _DAY,
            "completedOn": completed,
            "scheduledDate": scheduled,
            "vendor": self.ref("company", self.vendor),
            "customer": self.ref("company", company),
            "location": {**self.ref("location", loc), "address": dict(loc["address"])},
            "owner": self.ref("user", self.owner),
            "salesperson": self.ref("user", sales),
            "assignedOffice": self.ref("location", office),
            "contract": None,
            "serviceLine": line,
            "appointments": [],
            "tags": [dict(t) for t in tags],
            "externalIds": {},
            "created": created,
            "updated": completed or created,
        }
        job["uri"] = self.uri("job", job["id"])
        self.st["job"].append(job)
        if forced:
            # invoice landmarks name the invoice; "<landmark>_job" names its job
            key = forced.landmark + "_job" if forced.invoice else forced.landmark
            self.landmarks.setdefault(key, job["id"])
        invoice_kind = ""
        if forced:
            invoice_kind = forced.invoice
        elif status == "completed" and jtype != "administrative":
            invoice_kind = "normal" if rng.random() < self.spec.invoices_fraction else ""
        if invoice_kind:
            inv = self.invoice(job, loc, invoice_kind)
            if forced:
                self.landmarks[forced.landmark] = inv["id"]
        if (
            status != "canceled"
            and jtype != "administrative"
            and (number == JOB_NUMBER_START + 5 or number == JOB_NUMBER_START or rng.random() < 0.2)
        ):
            self.purchase_order(
                job,
                extra_unknown=number == JOB_NUMBER_START,
                closed_line=number == JOB_NUMBER_START + 5,
            )

    def invoice_item(
        self,
        lib: dict[str, Any],
        qty: Decimal,
        price: Decimal,
        rate: Decimal,
        order: int,
        line: str | None,
        description: str,
    ) -> dict[str, Any]:
        subtotal = _money(qty * price)
        tax = _money(subtotal * rate / 100)
        return {
            "id": self.ids(),
            "description": description,
            "quantity": _num(qty),
            "price": _num(price),
            "subtotal": _num(subtotal),
            "taxRate": _num(rate),
            "taxAmount": _num(tax),
            "totalPrice": _num(subtotal + tax),
            "orderIndex": order,
            "libItem": {
                "id": lib["id"],
                "uri": lib["uri"],
                "name": lib["name"],
                "code": lib["code"],
                "type": lib["type"],
            },
            "serviceLine": self.line_ref(line) if line else None,
        }

    def invoice(self, job: dict[str, Any], loc: dict[str, Any], kind: str) -> dict[str, Any]:
        rng = self.rng
        line = job["serviceLine"]
        state = loc["address"]["state"]
        rate = _TAX_RATE.get(state, Decimal(0)) if loc["taxable"] else Decimal(0)
        items: list[dict[str, Any]] = []
        labor = self.lib_by_code[f"LAB-{line}"]
        hours = Decimal(rng.randrange(2, 13)) / 2  # 1.0 .. 6.0 in half hours
        items.append(
            self.invoice_item(labor, hours, labor_price(line), rate, 1, line, labor["name"])
        )
        parts = [lib for lib in _LIB_ITEMS if lib.line == line and lib.type != "labor"]
        for lib in rng.sample(parts, k=rng.randrange(0, len(parts) + 1)):
            qty = Decimal(rng.randrange(1, 13))
            items.append(
                self.invoice_item(
                    self.lib_by_code[lib.code], qty, lib.price, rate, len(items) + 1, line, lib.name
                )
            )
        if kind == "mixed":
            positive = sum((Decimal(str(i["subtotal"])) for i in items), Decimal(0))
            discount = -_money(max(positive / 10, Decimal("5.00")))
            items.append(
                self.invoice_item(
                    self.lib_by_code["DISC"],
                    Decimal(1),
                    discount,
                    rate,
                    len(items) + 1,
                    line,
                    "Loyalty discount (credit)",
                )
            )
        subtotal = sum((Decimal(str(i["subtotal"])) for i in items), Decimal(0))
        tax = sum((Decimal(str(i["taxAmount"])) for i in items), Decimal(0))
        completed = job["completedOn"]
        office = job["assignedOffice"]
        inv: dict[str, Any] = {
            "id": self.ids(),
            "name": f"Invoice for Job {job['number']}",
            "type": "invoice",
            "status": "void" if kind == "void" else "pending_accounting",
            "substatus": None,
            "invoiceNumber": None,
            "refNumber": None,
            "customerPo": job["customerPo"],
            "notes": None,
            "partial": False,
            "isPaid": False,
            "isSent": False,
            "transactionDate": completed,
            "dueDate": completed + 30 * _DAY,
            "subtotal": _num(subtotal),
            "taxAmount": _num(tax),
            "totalPrice": _num(subtotal + tax),
            "totalPaidAmount": 0.0,
            "customer": dict(job["customer"]),
            "vendor": dict(job["vendor"]),
            "location": {k: v for k, v in job["location"].items() if k != "address"},
            "job": {
                "id": job["id"],
                "uri": job["uri"],
                "number": job["number"],
                "name": job["name"],
            },
            "contract": None,
            "assignedUser": None,
            "assignedOffice": dict(office),
            "items": items,
            "tags": [],
            "externalIds": {},
            "created": completed + 3600,
            "updated": completed + 2 * _DAY,
        }
        inv["uri"] = self.uri("invoice", inv["id"])
        self.st["invoice"].append(inv)
        return inv

    # -- ServiceTrade: timecards -------------------------------------------------------------
    def timecards(self) -> None:
        rng = self.rng
        workable = [
            j
            for j in self.st["job"]
            if j["status"] == "completed" and j["type"] != "administrative"
        ]
        by_office: dict[int, list[dict[str, Any]]] = {}
        for j in workable:
            by_office.setdefault(j["assignedOffice"]["id"], []).append(j)
        first_day = self.local_date(self.spec.start)
        days = self.spec.timecard_days
        for ti, tech in enumerate(self.techs):
            office = tech["offices"][0]["id"]
            pool = by_office.get(office) or workable
            rate = Decimal("38.00") + Decimal("2.50") * (ti % 6)
            for d in range(days):
                work_date = self.midnight(first_day + timedelta(days=d))
                entries: list[dict[str, Any]] = []
                if ti == 0 and d == days - 1:
                    entries.append(self.generic("PTO", Decimal(8)))
                elif ti == 1 and d == 0:
                    entries.append(self.generic("Holiday", Decimal(8)))
                else:
                    if ti == 2 and d == min(2, days - 1):
                        entries.append(self.generic("Sick", Decimal(4)))
                    clock = (ti == 0 and d == 0) or rng.random() < 0.4
                    if clock:
                        entries.append(self.clock(work_date, rng.choice(pool) if pool else None))
                    if pool:
                        budget = 32 - (16 if entries else 0)  # quarter hours left in the day
                        for _ in range(rng.randrange(1, 4)):
                            if budget < 2:
                                break
                            quarters = rng.randrange(2, min(budget, 16) + 1)
                            budget -= quarters
                            job = rng.choice(pool)
                            entries.append(
                                self.labor(
                                    job, Decimal(quarters) / 4, None if rng.random() < 0.2 else rate
                                )
                            )
                    if not entries:
                        entries.append(self.clock(work_date, None))
                approved = work_date + _DAY + 9 * 3600 + rng.randrange(0, 3600)
                tc: dict[str, Any] = {
                    "id": self.ids(),
                    "status": "approved",
                    "approvedOn": approved,
                    "workDate": work_date,
                    "user": {
                        "id": tech["id"],
                        "uri": tech["uri"],
                        "name": tech["name"],
                        "externalIds": dict(tech["externalIds"]),
                    },
                    "entries": entries,
                    "created": work_date + 17 * 3600,
                    "updated": approved,
                }
                tc["uri"] = self.uri("timecard", tc["id"])
                self.st["timecard"].append(tc)

    def generic(self, label: str, hours: Decimal) -> dict[str, Any]:
        return {"id": self.ids(), "kind": "generic", "label": label, "hours": _num(hours)}

    def clock(self, work_date: int, job: dict[str, Any] | None) -> dict[str, Any]:
        # minutes and seconds off the quarter hour, so that clock rounding has work to do
        clock_in = work_date + 7 * 3600 + self.rng.randrange(40, 95) * 60 + self.rng.randrange(60)
        clock_out = clock_in + self.rng.randrange(180, 270) * 60 + self.rng.randrange(60)
        return {
            "id": self.ids(),
            "kind": "clock",
            "clockIn": clock_in,
            "clockOut": clock_out,
            "job": {"id": job["id"], "number": job["number"]} if job else None,
        }

    def labor(self, job: dict[str, Any], hours: Decimal, rate: Decimal | None) -> dict[str, Any]:
        sl = _LINE_BY_ABBR[job["serviceLine"]]
        return {
            "id": self.ids(),
            "kind": "labor",
            "job": {"id": job["id"], "number": job["number"], "name": job["name"]},
            "serviceLine": {"id": sl.id, "name": sl.name, "abbr": sl.abbr},
            "hours": _num(hours),
            "payRate": _num(rate) if rate is not None else None,
        }

    # -- Spectrum ----------------------------------------------------------------------------
    def rows(self, table: Table, company: str, rows: Sequence[Mapping[str, Any]]) -> None:
        target = self.sp.setdefault(table.name, [])
        for row in rows:
            target.append({"Company_Code": company, **row})

    def spectrum_reference(self, company: str) -> None:
        self.rows(
            il.terms,
            company,
            [
                {"Terms_Code": "N", "Description": "Net 30 days"},
                {"Terms_Code": "D", "Description": "Due on receipt"},
            ],
        )
        self.rows(
            il.sales_tax_codes,
            company,
            [
                {
                    "Sales_Tax_Code": "NC",
                    "Description": "North Carolina 7%",
                    "Rate": Decimal("7.0"),
                },
                {
                    "Sales_Tax_Code": "SC",
                    "Description": "South Carolina 6%",
                    "Rate": Decimal("6.0"),
                },
                {"Sales_Tax_Code": "VA", "Description": "Virginia 5.3%", "Rate": Decimal("5.3")},
                {"Sales_Tax_Code": "EXEMPT", "Description": "Tax exempt", "Rate": Decimal("0")},
            ],
        )
        self.rows(
            il.tax_classes,
            company,
            [
                {"Tax_Class_Code": code, "Description": desc}
                for code, desc in (
                    ("NC", "North Carolina"),
                    ("SC", "South Carolina"),
                    ("VA", "Virginia"),
                    ("EXEMPT", "Exempt"),
                )
            ],
        )
        self.rows(
            il.cost_centers,
            company,
            [
                {"Cost_Center": "100", "Description": "Sprinkler"},
                {"Cost_Center": "200", "Description": "Fire Alarm"},
                {"Cost_Center": "300", "Description": "Extinguishers"},
            ],
        )
        self.rows(
            il.gl_accounts,
            company,
            [
                {"GL_Account": "4000", "Description": "Sprinkler revenue", "Direct_Cost_Flag": "N"},
                {
                    "GL_Account": "4100",
                    "Description": "Fire alarm revenue",
                    "Direct_Cost_Flag": "N",
                },
                {
                    "GL_Account": "4200",
                    "Description": "Extinguisher revenue",
                    "Direct_Cost_Flag": "N",
                },
                {
                    "GL_Account": "4300",
                    "Description": "Inspection revenue",
                    "Direct_Cost_Flag": "N",
                },
                {
                    "GL_Account": "5000",
                    "Description": "Job materials (direct)",
                    "Direct_Cost_Flag": "Y",
                },
            ],
        )
        self.rows(
            il.cost_types,
            company,
            [
                {"Cost_Type": "L", "Description": "Labor"},
                {"Cost_Type": "M", "Description": "Material"},
                {"Cost_Type": "O", "Description": "Other"},
            ],
        )
        self.rows(
            il.job_types,
            company,
            [
                {"Job_Type": code, "Description": desc}
                for code, desc in (
                    ("INSP", "Inspection"),
                    ("REPAIR", "Repair"),
                    ("SVC", "Service call"),
                    ("INSTALL", "Installation"),
                    ("PM", "Preventative maintenance"),
                )
            ],
        )
        self.rows(
            il.departments,
            company,
            [
                {"Department_Code": "10", "Description": "Durham field"},
                {"Department_Code": "20", "Description": "Charlotte field"},
            ],
        )
        self.rows(
            il.pay_types,
            company,
            [
                {"Pay_Type": code, "Description": desc}
                for code, desc in (
                    ("R", "Regular"),
                    ("O", "Overtime"),
                    ("V", "Vacation / PTO"),
                    ("H", "Holiday"),
                    ("S", "Sick"),
                )
            ],
        )
        self.rows(
            il.jobs,
            company,
            [
                {
                    "Job_Number": TEMPLATE_JOB,
                    "Job_Description": "Service job template",
                    "Division": "",
                    "Job_Type": "SVC",
                    "Price_Method_Code": "T",
                    "Cost_Center": "100",
                    "Status_Code": "A",
                    "Taxable_Flag": "N",
                }
            ],
        )
        self.rows(
            il.phases,
            company,
            [
                {
                    "Job_Number": TEMPLATE_JOB,
                    "Phase_Code": phase,
                    "Cost_Type": ctype,
                    "Description": desc,
                    "Price_Method_Code": "T",
                    "Unit_of_Measure": "HRS" if ctype == "L" else "EA",
                    "Original_Est_Cost": Decimal("0.00"),
                    "Cost_Center": phase,
                    "Status_Code": "A",
                }
                for phase, desc in (
                    ("100", "Sprinkler"),
                    ("200", "Fire Alarm"),
                    ("300", "Extinguishers"),
                )
                for ctype in ("L", "M")
            ],
        )

    def spectrum_people(self) -> None:
        dept = {OFFICE_DURHAM: "10", OFFICE_CHARLOTTE: "20"}
        employees = []
        for tech in self.techs:
            code = tech["externalIds"].get("spectrum")
            if not code:
                continue  # the technician without a Spectrum id has no employee on purpose
            employees.append(
                {
                    "Employee_Code": code,
                    "Employee_Name": f"{tech['lastName']}, {tech['firstName']}"[:30],
                    "First_Name": tech["firstName"],
                    "Last_Name": tech["lastName"],
                    "Employment_Status": "A",
                    "Department_Code": dept[tech["offices"][0]["id"]],
                    "Cost_Center": "100",
                }
            )
        self.rows(il.employees, SPECTRUM_COMPANY, employees)
        self.rows(
            il.salespersons,
            SPECTRUM_COMPANY,
            [{"Salesperson_Code": code, "Name": f"{first} {last}"} for first, last, code in _SALES],
        )
        self.rows(
            il.vendors,
            SPECTRUM_COMPANY,
            [
                {"Vendor_Code": code, "Vendor_Name": name, "Status": "A"}
                for code, name in (
                    ("FERGUSON", "Ferguson Fire & Fabrication"),
                    ("VIKING", "Viking Supply Net"),
                    ("SIMPLEX", "Simplex Distribution, Inc."),
                    ("AMEREX", "Amerex Corp."),
                )
            ],
        )
        # a construction job that never came from ServiceTrade; it has a PO the poller must skip
        self.rows(
            il.jobs,
            SPECTRUM_COMPANY,
            [
                {
                    "Job_Number": FOREIGN_JOB,
                    "Job_Description": "Warehouse expansion",
                    "Customer_Code": "",
                    "Job_Type": "INSTALL",
                    "Price_Method_Code": "F",
                    "Cost_Center": "100",
                    "Status_Code": "A",
                }
            ],
        )

    def spectrum_company_2(self) -> None:
        self.spectrum_reference(SPECTRUM_COMPANY_2)
        self.rows(
            il.salespersons,
            SPECTRUM_COMPANY_2,
            [{"Salesperson_Code": "S01", "Name": "Dana Whitfield"}],
        )
        self.rows(
            il.employees,
            SPECTRUM_COMPANY_2,
            [
                {
                    "Employee_Code": "E001",
                    "Employee_Name": "Tech, Sam",
                    "First_Name": "Sam",
                    "Last_Name": "Tech",
                    "Employment_Status": "A",
                    "Department_Code": "10",
                    "Cost_Center": "100",
                }
            ],
        )
        self.rows(
            il.vendors,
            SPECTRUM_COMPANY_2,
            [
                {
                    "Vendor_Code": "FERGUSON",
                    "Vendor_Name": "Ferguson Fire & Fabrication",
                    "Status": "A",
                }
            ],
        )

    def purchase_order(
        self,
        job: dict[str, Any] | None,
        *,
        extra_unknown: bool = False,
        closed_line: bool = False,
        job_number: str | None = None,
    ) -> None:
        rng = self.rng
        h, dt = il.po_headers, il.po_details
        number = str(self.next_po_number)
        self.next_po_number += 1
        if job is not None:
            line = job["serviceLine"]
            spectrum_job = f"T{job['number']}"
        else:
            line = "SP"
            spectrum_job = job_number or FOREIGN_JOB
        phase = _LINE_BY_ABBR[line].phase
        order_date = self.local_date(self.spec.start) - timedelta(days=rng.randrange(1, 10))
        modified = datetime.combine(order_date, datetime.min.time()) + timedelta(
            hours=rng.randrange(8, 17), minutes=rng.randrange(60), seconds=rng.randrange(60)
        )
        vendor = rng.choice(("FERGUSON", "VIKING", "SIMPLEX", "AMEREX"))
        header: dict[str, Any] = {
            "Company_Code": SPECTRUM_COMPANY,
            "PO_Number": _pad(h, "PO_Number", number),
            "Vendor_Code": _pad(h, "Vendor_Code", vendor),
            "Job_Number": _pad(h, "Job_Number", spectrum_job),
            "PO_Date_List1": order_date,
            "Status": "O",
            "Description": _pad(h, "Description", f"Materials for {spectrum_job}"),
            "Date_Modified": modified,
        }
        self.sp.setdefault(h.name, []).append(header)
        parts = [lib for lib in _LIB_ITEMS if lib.line == line and lib.type == "part"]
        chosen = rng.sample(parts, k=rng.randrange(1, len(parts) + 1)) if parts else []
        lines: list[tuple[str, str, Decimal]] = [(lib.code, lib.name, lib.cost) for lib in chosen]
        if extra_unknown:
            lines.append((UNKNOWN_ITEM_CODE, "OS&Y gate valve 4in", Decimal("212.3300")))
        for n, (code, desc, price) in enumerate(lines, start=1):
            qty = Decimal(rng.randrange(1, 25))
            status = "C" if closed_line and n == len(lines) else "O"
            self.sp.setdefault(dt.name, []).append(
                {
                    "Company_Code": SPECTRUM_COMPANY,
                    "PO_Number": header["PO_Number"],
                    "Line_Number": f"{n:03d}",
                    "Item_Code": _pad(dt, "Item_Code", code),
                    "Item_Description": _pad(dt, "Item_Description", desc[:30]),
                    "PO_Quantity_List1": qty,
                    "Item_Price": price,
                    "Unit_Of_Measure": _pad(dt, "Unit_Of_Measure", "EA"),
                    "Line_Extension_List1": _money(qty * price),
                    "GL_Account": _pad(dt, "GL_Account", "5000"),
                    "Delivery_Date": order_date + timedelta(days=3),
                    "Phase_Code": _pad(dt, "Phase_Code", phase),
                    "Cost_Type": _pad(dt, "Cost_Type", "M"),
                    "Line_Status": status,
                    "Date_Modified": modified,
                }
            )
        if job is not None and extra_unknown:
            self.landmarks["po_with_unknown_item_code"] = int(number)
        if closed_line:
            self.landmarks["po_with_closed_line"] = int(number)

    # -- all ---------------------------------------------------------------------------------
    def build(self) -> SeedWorld:
        self.account()
        self.catalog()
        self.people()
        self.spectrum_reference(SPECTRUM_COMPANY)
        self.spectrum_people()
        self.customers()
        self.purchase_order(None, job_number=FOREIGN_JOB)
        self.timecards()
        self.spectrum_company_2()
        spectrum = {name: _uniform(table_rows) for name, table_rows in self.sp.items()}
        return SeedWorld(servicetrade=self.st, spectrum=spectrum, landmarks=self.landmarks)


def _uniform(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every row of a table with the same columns (None where a row has none): a bulk insert
    (``executemany``) needs one shape per table."""
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    return [{c: row.get(c) for c in columns} for row in rows]


def labor_price(line: str) -> Decimal:
    """The hourly sell price of a service line's labor lib item."""
    return next(lib.price for lib in _LIB_ITEMS if lib.code == f"LAB-{line}")


#: the landmark invoice the demo edits and approves again after it was posted (a rebill)
REBILL_LANDMARK = "invoice_nc"


def office_edit(items: Sequence[Mapping[str, Any]], *, more: int = 1) -> list[dict[str, Any]]:
    """What an office does to a posted invoice before approving it again: one more unit on its
    first line (the simulator recomputes the money when ``items`` change)."""
    out = [dict(i) for i in items]
    if out:
        out[0]["quantity"] = _num(Decimal(str(out[0]["quantity"])) + more)
    return out


def build_world(spec: SeedSpec = SeedSpec()) -> SeedWorld:  # noqa: B008 - frozen, safe default
    """The world for ``spec``. Pure: the same spec gives an identical world."""
    return _Builder(spec).build()


def _json_default(value: object) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def world_to_json(world: SeedWorld, *, indent: int | None = None) -> str:
    """The world as JSON (Spectrum dates as ISO text, Decimals as strings), for ``seed --out``."""
    return json.dumps(
        {
            "servicetrade": world.servicetrade,
            "spectrum": world.spectrum,
            "landmarks": world.landmarks,
            "summary": world.summary(),
        },
        default=_json_default,
        indent=indent,
        ensure_ascii=False,
    )


__all__ = [
    "DEFAULT_START",
    "ST_RESOURCES",
    "SeedSpec",
    "SeedWorld",
    "build_world",
    "world_to_json",
]
