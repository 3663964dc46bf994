"""The seed world (sandbox/seed.py): deterministic, scalable, consistent with sandbox/demo.toml."""

from __future__ import annotations

import json
import time
from collections import Counter
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import String

from clients.servicetrade import models as st
from clients.spectrum import infolink_schema as il
from mappers.rules import ConnectionRules
from sandbox import credentials
from sandbox.seed import (
    BIG_ID_BASE,
    FOREIGN_JOB,
    UNKNOWN_ITEM_CODE,
    SeedSpec,
    SeedWorld,
    build_world,
    world_to_json,
)

DEMO_TOML = Path(__file__).resolve().parents[2] / "sandbox" / "demo.toml"
CENT = Decimal("0.01")


@pytest.fixture(scope="module")
def world() -> SeedWorld:
    return build_world()


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> ConnectionRules:
    from worker.settings import load_settings

    tmp = tmp_path_factory.mktemp("cfg")
    env = credentials.demo_environment("http://st", "http://sp", f"sqlite:///{tmp / 'il.sqlite'}")
    env["DATABASE_URL"] = f"sqlite:///{tmp / 'ledger.sqlite'}"
    return load_settings(DEMO_TOML, env).connections["main"].rules


def d(value: Any) -> Decimal:
    return Decimal(str(value))


def rows(world: SeedWorld, table: Any, company: str = "ABC") -> list[dict[str, Any]]:
    return [r for r in world.spectrum.get(table.name, []) if r["Company_Code"] == company]


def column(world: SeedWorld, table: Any, col: str, company: str = "ABC") -> set[str]:
    return {str(r[col]).strip() for r in rows(world, table, company)}


def customers(world: SeedWorld) -> list[dict[str, Any]]:
    return [c for c in world.servicetrade["company"] if c["isCustomer"]]


def by_id(world: SeedWorld, resource: str) -> dict[int, dict[str, Any]]:
    return {r["id"]: r for r in world.servicetrade[resource]}


# --- determinism and scale -----------------------------------------------------------------------
def test_same_spec_gives_identical_world() -> None:
    a, b = build_world(SeedSpec(seed=7, companies=12)), build_world(SeedSpec(seed=7, companies=12))
    assert a == b
    assert world_to_json(a) == world_to_json(b)


def test_different_seed_gives_different_world() -> None:
    a, b = build_world(SeedSpec(seed=1)), build_world(SeedSpec(seed=2))
    assert a.servicetrade["job"] != b.servicetrade["job"]
    assert world_to_json(a) != world_to_json(b)


def test_build_does_not_share_state_between_calls() -> None:
    a = build_world()
    a.servicetrade["company"][0]["name"] = "changed"
    assert build_world().servicetrade["company"][0]["name"] != "changed"


@pytest.mark.parametrize("n", [1, 2, 7, 60])
def test_companies_scale(n: int) -> None:
    w = build_world(SeedSpec(companies=n))
    assert len(customers(w)) == n
    assert w.summary()["customers"] == n
    per_company = Counter(loc["company"]["id"] for loc in w.servicetrade["location"])
    for c in customers(w):
        assert 1 <= per_company[c["id"]] <= 3, c["name"]
    assert len(w.servicetrade["job"]) == sum(per_company[c["id"]] for c in customers(w)) * 2


def test_jobs_per_location_and_timecard_counts() -> None:
    w = build_world(SeedSpec(companies=4, jobs_per_location=3, techs=6, timecard_days=7))
    assert len(w.servicetrade["job"]) == 3 * (len(w.servicetrade["location"]) - 2)  # - offices
    assert len(w.servicetrade["timecard"]) == 6 * 7
    techs = [u for u in w.servicetrade["user"] if u["isTech"]]
    assert len(techs) == 6


def test_five_thousand_companies_build_in_seconds() -> None:
    started = time.perf_counter()
    w = build_world(SeedSpec(companies=5000))
    elapsed = time.perf_counter() - started
    assert len(customers(w)) == 5000
    assert elapsed < 20, f"5000 companies took {elapsed:.1f} s"
    numbers = [j["number"] for j in w.servicetrade["job"]]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    assert max(len(f"T{n}") for n in numbers) <= 10  # Spectrum Job_Number width


@pytest.mark.parametrize(
    ("field", "value"),
    [("companies", 0), ("techs", 1), ("invoices_fraction", 1.5), ("jobs_per_location", 0)],
)
def test_bad_spec_names_the_field(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=field):
        SeedSpec(**{field: value})


# --- shapes ---------------------------------------------------------------------------------------
def test_servicetrade_side_is_plain_json(world: SeedWorld) -> None:
    json.dumps(world.servicetrade)  # no Decimal, no date: exactly what the API would send


def test_ids_unique_per_resource(world: SeedWorld) -> None:
    for resource, items in world.servicetrade.items():
        ids = [i["id"] for i in items]
        assert len(ids) == len(set(ids)), resource


def test_records_parse_with_the_inbound_models(world: SeedWorld) -> None:
    models: dict[str, Any] = {
        "company": st.Company,
        "location": st.Location,
        "job": st.Job,
        "invoice": st.Invoice,
        "user": st.User,
        "libitem": st.LibItem,
        "serviceline": st.ServiceLine,
        "timecard": st.Timecard,
        "tag": st.Tag,
    }
    for resource, model in models.items():
        for item in world.servicetrade[resource]:
            model.model_validate(item)


def test_spectrum_rows_fit_the_info_link_tables(world: SeedWorld) -> None:
    for name, table_rows in world.spectrum.items():
        table = il.metadata.tables[name]
        for row in table_rows:
            assert set(row) <= set(table.c.keys()), (name, set(row) - set(table.c.keys()))
            for key, value in row.items():
                col_type = table.c[key].type
                if isinstance(value, str) and isinstance(col_type, String) and col_type.length:
                    assert len(value) <= col_type.length, (name, key, value)


def test_big_ids(world: SeedWorld) -> None:
    w = build_world(SeedSpec(big_ids=True))
    offices = [
        loc for loc in w.servicetrade["location"] if loc["company"]["name"].startswith("Acme")
    ]
    assert sorted(o["id"] for o in offices) == [11, 12]
    assert sorted(s["id"] for s in w.servicetrade["serviceline"]) == [5, 6, 7, 8]
    for resource in ("company", "job", "invoice", "user", "libitem", "timecard"):
        for item in w.servicetrade[resource]:
            assert len(str(item["id"])) == 16, (resource, item["id"])
            assert BIG_ID_BASE <= item["id"] < 2**53  # JSON numbers stay exact
    assert len(w.servicetrade["job"]) == len(world.servicetrade["job"])
    assert all(len(str(i["id"])) < 16 for i in world.servicetrade["job"])


# --- consistency with demo.toml ------------------------------------------------------------
def test_reference_data_matches_demo_config(world: SeedWorld, rules: ConnectionRules) -> None:
    assert rules.company_code == "ABC"
    assert rules.customers.terms_code in column(world, il.terms, "Terms_Code")
    tax_codes = column(world, il.sales_tax_codes, "Sales_Tax_Code")
    assert rules.customers.sales_tax_code in tax_codes
    assert set(rules.tax.sales_tax_by_rate.values()) <= tax_codes
    assert set(rules.tax.sales_tax_by_state.values()) <= tax_codes
    rates = {r["Sales_Tax_Code"]: d(r["Rate"]) for r in rows(world, il.sales_tax_codes)}
    for rate, code in rules.tax.sales_tax_by_rate.items():
        assert rates[code] == Decimal(rate), code
    assert set(rules.tax.tax_class_by_state.values()) | {rules.tax.default_tax_class} <= column(
        world, il.tax_classes, "Tax_Class_Code"
    )
    assert set(rules.cost_centers.codes) == column(world, il.cost_centers, "Cost_Center")
    gl = {r["GL_Account"]: r["Direct_Cost_Flag"] for r in rows(world, il.gl_accounts)}
    for account in [*rules.cost_centers.gl_account.values(), *rules.invoices.job_type_gl.values()]:
        assert gl[account] == "N", f"invoice GL {account} must be a non-direct account"
    assert "Y" in gl.values()
    assert set(rules.jobs.job_type_map.values()) == column(world, il.job_types, "Job_Type")
    assert {"L", "M", "O"} == column(world, il.cost_types, "Cost_Type")
    pay_types = column(world, il.pay_types, "Pay_Type")
    assert {rules.timecards.regular_pay_type, *rules.timecards.pay_types.values()} <= pay_types
    departments = column(world, il.departments, "Department_Code")
    assert {
        *rules.timecards.department_by_office.values(),
        rules.timecards.default_department,
    } <= departments
    assert rules.jobs.template_job in column(world, il.jobs, "Job_Number")


def test_offices_and_service_lines_match_demo_config(
    world: SeedWorld, rules: ConnectionRules
) -> None:
    vendors = {c["id"] for c in world.servicetrade["company"] if c["isVendor"]}
    offices = {
        loc["id"]: loc for loc in world.servicetrade["location"] if loc["company"]["id"] in vendors
    }
    assert {int(k) for k in rules.cost_centers.by_office} == set(offices)
    assert {int(k) for k in rules.timecards.department_by_office} == set(offices)
    assert offices[11]["name"] == "Durham Office"
    assert offices[12]["name"] == "Charlotte Office"
    lines = {s["abbr"]: s["id"] for s in world.servicetrade["serviceline"]}
    assert set(rules.cost_centers.by_service_line) <= set(lines)
    assert set(rules.timecards.phase_by_service_line) <= set(lines)
    assert set(rules.purchase_orders.service_line_by_phase.values()) <= set(lines.values())
    unmapped = set(lines) - set(rules.cost_centers.by_service_line)
    assert unmapped == {"KS"}
    for job in world.servicetrade["job"]:
        assert job["assignedOffice"]["id"] in offices
        assert job["vendor"]["id"] in vendors


def test_template_job_has_phases_by_cost_type(world: SeedWorld, rules: ConnectionRules) -> None:
    template = rules.jobs.template_job
    phases = {
        (r["Phase_Code"], r["Cost_Type"])
        for r in rows(world, il.phases)
        if r["Job_Number"] == template
    }
    assert phases == {(p, c) for p in ("100", "200", "300") for c in ("L", "M")}
    assert set(rules.timecards.phase_by_service_line.values()) <= {p for p, _ in phases}
    assert rules.timecards.cost_type in {c for _, c in phases}
    assert rows(world, il.phases, "XYZ"), "company XYZ has a template too"


# --- special cases --------------------------------------------------------------------------------
def test_ignored_job_type_present(world: SeedWorld, rules: ConnectionRules) -> None:
    ignored = [j for j in world.servicetrade["job"] if j["type"] in rules.jobs.ignored_types]
    assert ignored
    assert world.landmarks["administrative_job"] in {j["id"] for j in ignored}
    mapped = {j["type"] for j in world.servicetrade["job"]} - set(rules.jobs.ignored_types)
    assert mapped <= set(rules.jobs.job_type_map)


def test_customer_names_exercise_sanitising(world: SeedWorld) -> None:
    names = [c["name"] for c in customers(world)]
    assert names[0] == "O'Brien & Sons, Inc."
    assert any(len(n) > 30 for n in names)
    assert any(not n.isascii() for n in names)
    states = {
        loc["address"]["state"]
        for c in customers(world)
        for loc in world.servicetrade["location"]
        if loc["company"]["id"] == c["id"]
    }
    assert states == {"NC", "SC", "VA"}


def test_pm_tags(world: SeedWorld, rules: ConnectionRules) -> None:
    import re

    pattern = re.compile(rules.jobs.pm_tag_pattern)
    tagged = [
        j for j in world.servicetrade["job"] if any(pattern.match(t["name"]) for t in j["tags"])
    ]
    assert tagged
    assert len(tagged) < len(world.servicetrade["job"])
    tags = {t["id"]: t["name"] for t in world.servicetrade["tag"]}
    for job in world.servicetrade["job"]:
        for t in job["tags"]:
            assert tags[t["id"]] == t["name"]


def test_exactly_one_tech_without_spectrum_id(world: SeedWorld) -> None:
    techs = [u for u in world.servicetrade["user"] if u["isTech"]]
    without = [u for u in techs if "spectrum" not in u["externalIds"]]
    assert [u["id"] for u in without] == [world.landmarks["tech_without_spectrum_id"]]
    employees = column(world, il.employees, "Employee_Code")
    with_id = {u["externalIds"]["spectrum"] for u in techs if u not in without}
    assert with_id == employees
    carded = {tc["user"]["id"] for tc in world.servicetrade["timecard"]}
    assert without[0]["id"] in carded


def test_exactly_one_salesperson_without_spectrum_id(world: SeedWorld) -> None:
    sales = [u for u in world.servicetrade["user"] if u["isSales"]]
    without = [u for u in sales if "spectrum" not in u["externalIds"]]
    assert [u["id"] for u in without] == [world.landmarks["salesperson_without_spectrum_id"]]
    codes = {u["externalIds"]["spectrum"] for u in sales if u not in without}
    assert codes == column(world, il.salespersons, "Salesperson_Code")
    assert all(len(c) <= 3 for c in codes)
    jobs = by_id(world, "job")
    pending = [i for i in world.servicetrade["invoice"] if i["status"] == "pending_accounting"]
    hit = [i for i in pending if jobs[i["job"]["id"]]["salesperson"]["id"] == without[0]["id"]]
    assert world.landmarks["invoice_salesperson_without_id"] in {i["id"] for i in hit}


def test_mixed_sign_and_void_invoices(world: SeedWorld) -> None:
    invoices = by_id(world, "invoice")
    mixed = invoices[world.landmarks["mixed_sign_invoice"]]
    signs = {d(i["subtotal"]) > 0 for i in mixed["items"]}
    assert signs == {True, False}
    assert mixed["status"] == "pending_accounting"
    assert d(mixed["subtotal"]) > 0
    void = invoices[world.landmarks["void_invoice"]]
    assert void["status"] == "void"
    statuses = Counter(i["status"] for i in world.servicetrade["invoice"])
    assert statuses["void"] >= 1
    assert statuses["pending_accounting"] >= 3


def test_invoice_money_relations_hold(world: SeedWorld) -> None:
    for world_ in (world, build_world(SeedSpec(seed=9, companies=40))):
        for inv in world_.servicetrade["invoice"]:
            sub = tax = Decimal(0)
            for item in inv["items"]:
                item_sub = d(item["subtotal"])
                assert item_sub == (d(item["quantity"]) * d(item["price"])), (inv["id"], item)
                assert d(item["taxAmount"]) == (item_sub * d(item["taxRate"]) / 100).quantize(
                    CENT, rounding=ROUND_HALF_UP
                )
                assert d(item["totalPrice"]) == item_sub + d(item["taxAmount"])
                sub += item_sub
                tax += d(item["taxAmount"])
            assert d(inv["subtotal"]) == sub, inv["id"]
            assert d(inv["taxAmount"]) == tax, inv["id"]
            assert d(inv["totalPrice"]) == sub + tax, inv["id"]


def test_invoice_tax_rates_are_configured(world: SeedWorld, rules: ConnectionRules) -> None:
    configured = set(rules.tax.sales_tax_by_rate)
    seen = {
        str(d(i["taxRate"]).normalize())
        for inv in world.servicetrade["invoice"]
        for i in inv["items"]
    }
    assert seen <= configured
    pending = [
        inv for inv in world.servicetrade["invoice"] if inv["status"] == "pending_accounting"
    ]
    pending_rates = {str(d(i["taxRate"]).normalize()) for inv in pending for i in inv["items"]}
    assert {"7", "6", "5.3"} <= pending_rates


def test_invoices_only_for_completed_jobs(world: SeedWorld) -> None:
    jobs = by_id(world, "job")
    for inv in world.servicetrade["invoice"]:
        job = jobs[inv["job"]["id"]]
        assert job["status"] == "completed"
        assert inv["location"]["id"] == job["location"]["id"]
        assert inv["customer"]["id"] == job["customer"]["id"]


def test_invoices_fraction_controls_invoices() -> None:
    none = build_world(SeedSpec(companies=30, invoices_fraction=0.0))
    all_ = build_world(SeedSpec(companies=30, invoices_fraction=1.0))
    forced = 5  # the fixed special-case invoices exist regardless
    assert len(none.servicetrade["invoice"]) == forced
    completed = [
        j
        for j in all_.servicetrade["job"]
        if j["status"] == "completed" and j["type"] != "administrative"
    ]
    assert len(all_.servicetrade["invoice"]) == len(completed)


def test_timecards(world: SeedWorld, rules: ConnectionRules) -> None:
    spec = SeedSpec()
    cards = world.servicetrade["timecard"]
    assert len(cards) == spec.techs * spec.timecard_days
    assert {tc["status"] for tc in cards} == {"approved"}
    kinds = Counter(e["kind"] for tc in cards for e in tc["entries"])
    assert set(kinds) == {"labor", "clock", "generic"}
    labels = {e["label"] for tc in cards for e in tc["entries"] if e["kind"] == "generic"}
    assert {"PTO", "Holiday"} <= labels
    assert labels <= set(rules.timecards.pay_types)
    jobs = by_id(world, "job")
    lines = {s["abbr"] for s in world.servicetrade["serviceline"]}
    for tc in cards:
        parsed = st.Timecard.model_validate(tc)
        assert parsed.approved_on is not None
        assert parsed.approved_on > parsed.work_date
        for e in tc["entries"]:
            if e["kind"] == "labor":
                job = jobs[e["job"]["id"]]
                assert job["number"] == e["job"]["number"]
                assert job["type"] not in rules.jobs.ignored_types
                assert e["serviceLine"]["abbr"] in lines
                assert 0 < d(e["hours"]) <= 8
            if e["kind"] == "clock":
                assert tc["workDate"] < e["clockIn"] < e["clockOut"] < tc["workDate"] + 86_400
        total = sum((d(e["hours"]) for e in tc["entries"] if "hours" in e), Decimal(0))
        assert total <= 12, tc["id"]
    # one card per technician per day
    assert len({(tc["user"]["id"], tc["workDate"]) for tc in cards}) == len(cards)


# --- purchase orders -----------------------------------------------------------------------------
def test_purchase_orders_pad_and_point_at_synced_jobs(world: SeedWorld) -> None:
    headers = rows(world, il.po_headers)
    details = rows(world, il.po_details)
    assert headers
    assert details
    job_numbers = {f"T{j['number']}" for j in world.servicetrade["job"]}
    lib_codes = {li["code"] for li in world.servicetrade["libitem"]}
    for h in headers:
        assert len(h["PO_Number"]) == 10
        assert h["PO_Number"].endswith(" ")
        assert len(h["Job_Number"]) == 10
        assert h["Job_Number"].strip() in job_numbers | {FOREIGN_JOB}
        assert h["PO_Date_List1"] is not None
        assert h["Date_Modified"] is not None
    assert any(h["Job_Number"].strip() == FOREIGN_JOB for h in headers)
    po_numbers = {h["PO_Number"] for h in headers}
    codes = set()
    for line in details:
        assert line["PO_Number"] in po_numbers
        assert len(line["Item_Code"]) == 15
        assert line["Item_Code"] != line["Item_Code"].strip()
        assert len(line["Cost_Type"]) == 3
        codes.add(line["Item_Code"].strip())
        assert line["Phase_Code"].strip() in {"100", "200", "300"}
        assert line["Line_Extension_List1"] == (
            line["PO_Quantity_List1"] * line["Item_Price"]
        ).quantize(CENT, rounding=ROUND_HALF_UP)
    assert UNKNOWN_ITEM_CODE in codes
    assert codes - {UNKNOWN_ITEM_CODE} <= lib_codes
    assert {"O", "C"} <= {line["Line_Status"] for line in details}
    unknown_po = str(world.landmarks["po_with_unknown_item_code"])
    assert any(
        line["PO_Number"].strip() == unknown_po and line["Item_Code"].strip() == UNKNOWN_ITEM_CODE
        for line in details
    )


# --- loads into the simulators -------------------------------------------------------------
def test_world_loads_into_spectrum_db(world: SeedWorld, tmp_path: Path) -> None:
    from sandbox.spectrum.db import SpectrumDB

    db = SpectrumDB(f"sqlite:///{tmp_path / 'spectrum.sqlite'}")
    try:
        db.load(world.spectrum)
        for name, table_rows in world.spectrum.items():
            assert db.count(name) == len(table_rows), name
        assert db.count(il.phases.name, Company_Code="ABC", Job_Number="TEMPLATE") == 6
        po = db.rows(il.po_details.name)[0]
        assert po["Item_Code"].endswith(" ")  # padding survives the round trip
    finally:
        db.dispose()


def test_world_loads_into_st_state(world: SeedWorld) -> None:
    from fastapi.testclient import TestClient

    from sandbox.faults import FaultInjector
    from sandbox.servicetrade.app import create_app
    from sandbox.servicetrade.state import STState

    state = STState()
    state.load(world.servicetrade)
    app = create_app(state, FaultInjector(), deliver=lambda url, body: 200)
    job = world.servicetrade["job"][0]
    with TestClient(app) as client:
        token = client.post(
            "/api/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_id": credentials.ST_CLIENT_ID,
                "client_secret": credentials.ST_CLIENT_SECRET,
            },
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        got = client.get(f"/api/job/{job['id']}", headers=headers)
        assert got.status_code == 200, got.text
        assert got.json()["data"]["number"] == job["number"]
        inv_id = world.landmarks["mixed_sign_invoice"]
        inv = client.get(f"/api/invoice/{inv_id}", headers=headers).json()["data"]
        assert inv["totalPrice"] == by_id(world, "invoice")[inv_id]["totalPrice"]
        cards = client.get("/api/timecard", params={"status": "approved"}, headers=headers)
        assert cards.status_code == 200, cards.text
        assert len(cards.json()["data"]["timecards"]) == len(world.servicetrade["timecard"])


def test_spectrum_rows_have_one_shape_per_table(world: SeedWorld) -> None:
    for name, table_rows in world.spectrum.items():
        shapes = {tuple(r) for r in table_rows}
        assert len(shapes) == 1, name


def test_world_reads_back_through_the_info_link_reader(world: SeedWorld, tmp_path: Path) -> None:
    from clients.spectrum.infolink import InfoLinkReader
    from sandbox.spectrum.db import SpectrumDB

    db = SpectrumDB(f"sqlite:///{tmp_path / 'spectrum.sqlite'}")
    db.load(world.spectrum)
    try:
        with InfoLinkReader(db.url, "ABC") as reader:
            lines = [line for page in reader.iter_po_lines(None, page_size=4) for line in page]
            assert len(lines) == len(rows(world, il.po_details))
            for line in lines:  # the reader trims what the seed padded
                assert line.po_number == line.po_number.strip()
                assert line.item_code == (line.item_code or "").strip()
                assert line.job_number == (line.job_number or "").strip()
            assert UNKNOWN_ITEM_CODE in {line.item_code for line in lines}
            assert len(reader.list_phases("TEMPLATE")) == 6
            assert reader.find_employee("E001") is not None
            assert reader.find_customer("C00001") is None  # customers arrive by sync only
        with InfoLinkReader(db.url, "XYZ") as reader:
            assert [p for page in reader.iter_po_lines(None) for p in page] == []
            assert len(reader.list_phases("TEMPLATE")) == 6
    finally:
        db.dispose()
