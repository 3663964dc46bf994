"""Routing between several Spectrum companies (F24): ``route = { offices, regions, tags, states }``.

Two automatic connections on the in-process sandbox: ``main`` (company ABC) takes the Durham
office, ``east`` (company XYZ, same sandbox) the Charlotte office.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clients.errors import ConfigError
from mappers.rules import Route, route_facts, route_mismatch, routes_overlap
from sandbox import credentials
from tasks import customer as customer_task
from tasks import invoice as invoice_task
from tasks import job as job_task
from tasks.route import route_refusal
from tests.conftest import asgi_transport, demo_env, fast_settings_toml
from worker.ledger import RecordKey, Status
from worker.settings import load_settings

EAST = """
[connections.main.route]
offices = ["Durham Office"]

[connections.east]
company_code = "XYZ"
base_url = "http://spectrum.sandbox"
infolink_url = "{infolink}"
authorization_id_env = "SPECTRUM_XYZ_AUTH"
auto_sync = true
route = {{ offices = ["12"] }}

[connections.east.customers]
codes = {{ prefix = "E", start = 1, end = 99999, width = 5 }}
[connections.east.sites]
codes = {{ prefix = "R", start = 1, end = 99999, width = 5 }}
[connections.east.cost_centers]
codes = ["100", "200", "300"]
by_service_line = {{ SP = "100", FA = "200", EX = "300" }}
default = "100"
[connections.east.jobs]
number_prefix = "E"
template_job = "TEMPLATE"
job_type_map = {{ inspection = "INSP", repair = "REPAIR", service_call = "SVC", installation = "INSTALL", preventative_maintenance = "PM" }}
[connections.east.tax]
default_tax_class = "EXEMPT"
tax_class_by_state = {{ NC = "NC", SC = "SC", VA = "VA" }}
[connections.east.timecards]
phase_by_service_line = {{ SP = "100", FA = "200", EX = "300" }}
default_phase = "100"
department_by_office = {{ "11" = "10", "12" = "20" }}
default_department = "10"
"""


def settings_with(tmp_path: Path, spectrum_db: Any, ledger_path_url: str, extra: str) -> Any:
    env = demo_env(
        tmp_path,
        infolink_url=spectrum_db.url,
        database_url=ledger_path_url,
        extra={"SPECTRUM_XYZ_AUTH": credentials.SPECTRUM_AUTHORIZATION_ID_2},
    )
    return load_settings(fast_settings_toml(tmp_path, extra=extra), env)


@pytest.fixture
def routed(
    tmp_path: Path,
    spectrum_db: Any,
    ledger_path_url: str,
    st_app: Any,
    spectrum_app: Any,
    enqueued: list[Any],
) -> Iterator[Any]:
    from worker.context import build_context
    from worker.ledger import Ledger

    settings = settings_with(
        tmp_path, spectrum_db, ledger_path_url, EAST.format(infolink=spectrum_db.url)
    )
    led = Ledger(settings.database_url)
    led.migrate()
    c = build_context(
        settings,
        enqueue=lambda name, args: enqueued.append((name, args)),
        st_transport=asgi_transport(st_app),
        spectrum_transport=asgi_transport(spectrum_app),
        retry_wait_s=0,
        ledger=led,
    )
    yield c
    c.close()
    led.dispose()


def deliver(ctx: Any, record_type: str, st_id: int) -> dict[str, str]:
    """What a webhook event does: every automatic connection's task (route check, then sync)."""
    sync = {
        "customer": customer_task.sync_customer,
        "job": job_task.sync_job,
        "invoice": invoice_task.sync_invoice,
    }[record_type]
    out = {}
    for conn in ctx.settings.auto_sync_connections():
        why = route_refusal(ctx, record_type, st_id, conn)
        out[conn] = "skipped" if why else sync(ctx, st_id, conn).result
    return out


def test_route_by_office_sends_each_job_to_exactly_one_company(
    routed: Any, st_state: Any, spectrum_db: Any
) -> None:
    jobs = [
        j
        for j in st_state.all("job")
        if j["type"] != "administrative" and j["status"] != "canceled"
    ]
    offices = {j["assignedOffice"]["id"] for j in jobs}
    assert offices == {11, 12}
    for job in jobs:
        results = deliver(routed, "job", job["id"])
        want = "east" if job["assignedOffice"]["id"] == 12 else "main"
        other = "main" if want == "east" else "east"
        assert results[want] in ("synced", "adopted"), (job["id"], results)
        assert results[other] == "skipped"
        skipped = routed.ledger.get(RecordKey(other, "job", str(job["id"])))
        assert skipped.status is Status.SKIPPED
        assert "routing: not for connection" in (skipped.last_error or "")
    for job in jobs:
        prefix = "E" if job["assignedOffice"]["id"] == 12 else "T"
        numbers = [
            r["Job_Number"].strip()
            for r in spectrum_db.rows("JC_JOB_MASTER_MC")
            if r["Job_Number"].strip().endswith(str(job["number"]))
        ]
        assert numbers == [f"{prefix}{job['number']}"], numbers
    # customers: created only where a routed job needed them, never by their own event
    company = jobs[0]["customer"]["id"]
    assert deliver(routed, "customer", company) == {"main": "skipped", "east": "skipped"}


def test_route_by_office_job_moved_to_the_other_office_follows_only_when_new(
    routed: Any, st_state: Any
) -> None:
    job = next(
        j
        for j in st_state.all("job")
        if j["assignedOffice"]["id"] == 11
        and j["status"] in ("new", "scheduled")
        and j["type"] != "administrative"
    )
    assert deliver(routed, "job", job["id"]) == {"main": "synced", "east": "skipped"}
    st_state.update("job", job["id"], {"assignedOffice": {"id": 12, "name": "Charlotte Office"}})
    # not yet in east: routing now sends it there; main keeps its synced job
    results = deliver(routed, "job", job["id"])
    assert results["east"] == "synced"
    assert routed.ledger.get(RecordKey("main", "job", str(job["id"]))).status is Status.DONE


def test_route_by_invoice_follows_its_job(routed: Any, world: Any) -> None:
    inv = world.landmarks["invoice_nc"]  # its job is at the Durham office
    results = deliver(routed, "invoice", inv)
    assert results == {"main": "synced", "east": "skipped"}


def test_route_by_tag_and_state_two_matches_fail_with_the_reason(
    tmp_path: Path,
    spectrum_db: Any,
    ledger_path_url: str,
    st_app: Any,
    spectrum_app: Any,
    st_state: Any,
) -> None:
    from worker.context import build_context
    from worker.ledger import Ledger

    job = next(j for j in st_state.all("job") if any(t["name"] == "after-hours" for t in j["tags"]))
    state = st_state.get("location", job["location"]["id"])["address"]["state"]
    extra = (
        EAST.format(infolink=spectrum_db.url)
        .replace('offices = ["Durham Office"]', f'states = ["{state}"]')
        .replace('route = { offices = ["12"] }', 'route = { tags = ["after-hours"] }')
    )
    settings = settings_with(tmp_path, spectrum_db, ledger_path_url, extra)
    led = Ledger(settings.database_url)
    led.migrate()
    ctx = build_context(
        settings,
        enqueue=lambda n, a: None,
        st_transport=asgi_transport(st_app),
        spectrum_transport=asgi_transport(spectrum_app),
        retry_wait_s=0,
        ledger=led,
    )
    try:
        assert deliver(ctx, "job", job["id"]) == {"main": "skipped", "east": "skipped"}
        for conn in ("main", "east"):
            rec = led.get(RecordKey(conn, "job", str(job["id"])))
            assert rec is not None
            assert rec.status is Status.FAILED
            assert "matches the routes of connections main, east" in (rec.last_error or "")
            assert led.alerts(RecordKey(conn, "job", str(job["id"])))
        assert spectrum_db.count("JC_JOB_MASTER_MC", Job_Number=f"T{job['number']}") == 0
    finally:
        ctx.close()
        led.dispose()


def test_route_by_config_overlap_is_refused_at_start_up(
    tmp_path: Path, spectrum_db: Any, ledger_path_url: str
) -> None:
    same = EAST.format(infolink=spectrum_db.url).replace(
        'route = { offices = ["12"] }', 'route = { offices = ["durham office", "12"] }'
    )
    with pytest.raises(ConfigError, match=r"connections.east.route: overlaps connections.main"):
        settings_with(tmp_path, spectrum_db, ledger_path_url, same)
    unrouted = EAST.format(infolink=spectrum_db.url).replace('route = { offices = ["12"] }\n', "")
    with pytest.raises(ConfigError, match=r"connections.east.route: missing"):
        settings_with(tmp_path, spectrum_db, ledger_path_url, unrouted)
    empty = EAST.format(infolink=spectrum_db.url).replace(
        'route = { offices = ["12"] }', "route = {}"
    )
    with pytest.raises(ConfigError, match="at least one of offices"):
        settings_with(tmp_path, spectrum_db, ledger_path_url, empty)


def test_route_by_without_route_is_todays_behaviour(ctx: Any, world: Any) -> None:
    assert route_refusal(ctx, "job", world.landmarks["invoice_nc_job"], "main") is None


def test_route_by_matching_rules_are_pure() -> None:
    route = Route(offices=["Durham Office"], states=["nc"])
    assert route_mismatch(route, route_facts(offices=[11, "Durham  office"], state="NC")) is None
    assert "states" in (
        route_mismatch(route, route_facts(offices=[11, "Durham Office"], state="SC")) or ""
    )
    assert routes_overlap(Route(offices=["A"]), Route(offices=["B"])) is None
    assert routes_overlap(Route(offices=["A"]), Route(states=["NC"])) is None
    assert routes_overlap(Route(offices=["A", "B"]), Route(offices=["b"])) is not None


def test_route_by_office_timecard_entries_go_with_their_jobs(
    routed: Any, st_state: Any, spectrum_db: Any
) -> None:
    from tasks.timecard import sync_timecard_tally

    card = next(
        c
        for c in st_state.all("timecard")
        if c["status"] == "approved"
        and c["user"].get("externalIds", {}).get("spectrum") == "E001"
        and any(e["kind"] == "labor" for e in c["entries"])
    )
    labor = next(e for e in card["entries"] if e["kind"] == "labor")
    east_job = next(
        j
        for j in st_state.all("job")
        if j["assignedOffice"]["id"] == 12
        and j["type"] != "administrative"
        and j["status"] != "canceled"
    )
    extra = {
        **labor,
        "id": 990201,
        "hours": 1.5,
        "job": {"id": east_job["id"], "number": east_job["number"], "name": east_job["name"]},
    }
    # the technician is E001 in company XYZ too
    st_state.update("user", card["user"]["id"], {"externalIds": {"spectrum_east": "E001"}})
    st_state.update("timecard", card["id"], {"entries": [*card["entries"], extra]})
    _, main_tally = sync_timecard_tally(routed, card["id"], "main")
    _, east_tally = sync_timecard_tally(routed, card["id"], "east")
    sid = f"{card['id']}:990201"
    assert sid in east_tally.posted and sid in main_tally.skipped
    main_jobs = {e["job"]["id"] for e in card["entries"] if e.get("job")}
    for job_id in main_jobs:
        entry_sids = [
            f"{card['id']}:{e['id']}"
            for e in card["entries"]
            if e.get("job") and e["job"]["id"] == job_id
        ]
        assert all(s in main_tally.posted for s in entry_sids)
        assert all(s in east_tally.skipped for s in entry_sids)
    # every job is in exactly one Spectrum company
    for job_id in {*main_jobs, east_job["id"]}:
        number = st_state.get("job", job_id)["number"]
        made = [
            r
            for r in spectrum_db.rows("JC_JOB_MASTER_MC")
            if r["Job_Number"].strip() in (f"T{number}", f"E{number}")
        ]
        assert len(made) == 1, (job_id, made)
    jobless = [f"{card['id']}:{e['id']}" for e in card["entries"] if not e.get("job")]
    assert all(s in main_tally.posted and s in east_tally.skipped for s in jobless)
