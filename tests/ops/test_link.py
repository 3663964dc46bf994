"""``stsync link`` (F22): existing Spectrum customers, sites and jobs matched on day one, so the
first full sync creates nothing twice. In-process sandbox, the CLI through typer's runner."""

from __future__ import annotations

from typing import Any

from typer.testing import CliRunner

from cli.link import apply_links, plan_links
from cli.main import app
from clients.spectrum import infolink_schema as il
from clients.spectrum.models import SpectrumRequest
from mappers.customer import st_company_to_add_customer
from mappers.site import st_location_to_wo_site
from tasks.customer import sync_customer
from tasks.job import spectrum_jobs_of, sync_job
from tasks.site import sync_site
from worker.ledger import RecordKey, Status

runner = CliRunner()


def customers(st_state: Any) -> list[dict[str, Any]]:
    return [c for c in st_state.all("company") if c.get("isCustomer")]


def spectrum_holds_half(ctx: Any, st_state: Any) -> dict[str, Any]:
    """Put half of the ServiceTrade customers (and one site of each, and one job) into Spectrum
    the way another integration would have: other codes, same names and addresses."""
    rules = ctx.settings.connections["main"].rules
    spectrum = ctx.spectrum_for("main")
    half = customers(st_state)[: max(1, len(customers(st_state)) // 2)]
    made: dict[str, Any] = {"customers": {}, "sites": {}, "job": None}
    for i, company in enumerate(half, 1):
        code = f"OLD{i:03d}"
        request, _ = st_company_to_add_customer(
            ctx.st.get_company(company["id"]), code=code, rules=rules
        )
        spectrum.put(request)
        made["customers"][company["id"]] = code
        loc = next(
            lo
            for lo in st_state.all("location")
            if lo.get("company") and lo["company"]["id"] == company["id"]
        )
        site_code = f"OS{i:03d}"
        site_req, _ = st_location_to_wo_site(
            ctx.st.get_location(loc["id"]), site=site_code, customer_code=code, rules=rules
        )
        spectrum.put(site_req)
        made["sites"][loc["id"]] = site_code
    job = next(
        j
        for j in st_state.all("job")
        if j["customer"]["id"] == half[0]["id"]
        and j["location"]["id"] in made["sites"]
        and j["type"] != "administrative"
    )
    spectrum.put(
        SpectrumRequest(
            service="AddJob",
            values={
                "Company_Code": "ABC",
                "Job_Number": f"J-{job['number']}",
                "Taxable_Flag": "Y",
                "Price_Method_Code": "T",
                "Customer_Code": made["customers"][half[0]["id"]],
                "WO_Site": made["sites"][job["location"]["id"]],
                "Cost_Center": "100",
                "Job_Description": "from the old integration",
            },
        )
    )
    made["job"] = (job["id"], f"J-{job['number']}")
    return made


def test_link_existing_matches_then_first_full_sync_makes_no_duplicates(
    ctx: Any, st_state: Any, spectrum_db: Any, spectrum_app: Any
) -> None:
    made = spectrum_holds_half(ctx, st_state)
    report = plan_links(ctx, "main")
    verdicts = {(link.kind, link.st_id): (link.verdict, link.codes) for link in report.links}
    for company_id, code in made["customers"].items():
        assert verdicts[("customer", company_id)] == ("matched", (code,))
    for location_id, code in made["sites"].items():
        assert verdicts[("site", location_id)] == ("matched", (code,))
    job_id, number = made["job"]
    assert verdicts[("job", job_id)] == ("matched", (number,))
    others = [c["id"] for c in customers(st_state) if c["id"] not in made["customers"]]
    assert others and all(verdicts[("customer", c)][0] == "new" for c in others)
    assert spectrum_db.count(il.customers.name) == len(made["customers"])  # nothing written

    applied = apply_links(ctx, report)
    assert applied == len(made["customers"]) + len(made["sites"]) + 1
    for company_id, code in made["customers"].items():
        assert st_state.get("company", company_id)["externalIds"]["spectrum"] == code
    assert spectrum_jobs_of(ctx, job_id, "main") == {"100": number}

    # the first full sync: every customer, location and job
    for c in customers(st_state):
        sync_customer(ctx, c["id"], "main")
    for lo in st_state.all("location"):
        if lo.get("company") and lo["company"]["id"] in {c["id"] for c in customers(st_state)}:
            sync_site(ctx, lo["id"], "main")
    for j in st_state.all("job"):
        sync_job(ctx, j["id"], "main")
    names = [r["Name"].strip().upper() for r in spectrum_db.rows(il.customers.name)]
    assert len(names) == len(set(names)) == len(customers(st_state))  # 0 duplicates
    assert int(spectrum_app.state.injector.calls["AddCustomer"]) == (
        len(made["customers"]) + len(others)  # the old integration's, then only the new ones
    )
    site_names = [
        (r["Site_Name"].strip(), r["Site_Customer_Code"].strip())
        for r in spectrum_db.rows(il.sites.name)
    ]
    assert len(site_names) == len(set(site_names))
    assert not spectrum_db.rows(il.jobs.name, Job_Number=f"T{number.split('-')[1]}")
    rec = ctx.ledger.get(RecordKey("main", "job", str(job_id)))
    assert rec.status is Status.DONE and rec.spectrum_key == number


def test_link_existing_ambiguous_is_not_linked(ctx: Any, st_state: Any) -> None:
    rules = ctx.settings.connections["main"].rules
    company = customers(st_state)[0]
    for code in ("DUP1", "DUP2"):
        request, _ = st_company_to_add_customer(
            ctx.st.get_company(company["id"]), code=code, rules=rules
        )
        ctx.spectrum_for("main").put(request)
    report = plan_links(ctx, "main")
    (link,) = [x for x in report.links if (x.kind, x.st_id) == ("customer", company["id"])]
    assert (link.verdict, link.codes) == ("ambiguous", ("DUP1", "DUP2"))
    apply_links(ctx, report)
    assert "spectrum" not in (st_state.get("company", company["id"]).get("externalIds") or {})
    assert ctx.ledger.get(RecordKey("main", "customer", str(company["id"]))) is None


def test_link_existing_cli_reviews_then_applies(cli_env: Any, cli_ctx: Any, st_state: Any) -> None:
    made = spectrum_holds_half(cli_ctx, st_state)
    review = runner.invoke(app, ["link"], catch_exceptions=False)
    assert review.exit_code == 0, review.output
    assert "matched" in review.output and "nothing written" in review.output
    assert "OLD001" in review.output
    assert "spectrum" not in (
        st_state.get("company", next(iter(made["customers"]))).get("externalIds") or {}
    )
    applied = runner.invoke(app, ["link", "--apply"], catch_exceptions=False)
    assert applied.exit_code == 0, applied.output
    assert "link(s) written" in applied.output
    company_id, code = next(iter(made["customers"].items()))
    assert st_state.get("company", company_id)["externalIds"]["spectrum"] == code
    again = runner.invoke(app, ["link", "--apply"], catch_exceptions=False)
    assert "0 link(s) written" in again.output


def test_link_existing_job_is_adopted_as_it_is_then_follows_changes(
    ctx: Any, st_state: Any, spectrum_db: Any
) -> None:
    made = spectrum_holds_half(ctx, st_state)
    apply_links(ctx, plan_links(ctx, "main"))
    job_id, number = made["job"]
    sync_job(ctx, job_id, "main")
    (row,) = spectrum_db.rows(il.jobs.name, Job_Number=number)
    assert row["Job_Description"].strip() == "from the old integration"  # left as it was
    st_state.update("job", job_id, {"name": "Renamed in ServiceTrade"})
    assert sync_job(ctx, job_id, "main").result == "synced"
    (row,) = spectrum_db.rows(il.jobs.name, Job_Number=number)
    assert row["Job_Description"].strip() == "Renamed in ServiceTrade"


def test_link_stopped_by_an_error_says_why_on_stderr_with_the_reason_as_text(
    cli_env: Any, cli_ctx: Any, monkeypatch: Any
) -> None:
    from clients.errors import TransientError

    def refused(*_args: Any, **_kwargs: Any) -> Any:
        raise TransientError("Spectrum answered 503 for [connections.main] GetCustomer")

    monkeypatch.setattr("cli.link.plan_links", refused)
    result = runner.invoke(app, ["link"])
    assert result.exit_code == 1
    said = " ".join(result.stderr.split())  # folded to the terminal's width, never cut
    assert "link stopped (TransientError)" in said
    # the bracketed part is the reason's text, not Rich markup swallowed on the way
    assert "for [connections.main] GetCustomer" in said
    assert "link stopped" not in result.stdout
