"""``stsync link``: match existing ServiceTrade records to existing Spectrum ones on day one (F22).

Before the first sync on an account whose Spectrum already holds customers, sites and jobs (from
another integration or typed by hand), ``stsync link`` reads both systems and prints a review
table: per ServiceTrade company, location and job, ``matched`` (one Spectrum record has the same
normalised name and address / job number), ``ambiguous`` (several: set the external id by hand),
``new`` (none: the first sync creates it) or ``linked`` (stsync already knows it). Nothing is
written unless ``--apply``: then every matched record gets its Spectrum code in ServiceTrade's
``externalIds`` and a ``done`` ledger row, so the first sync adopts instead of creating twice.

Matching rules are in ``mappers/link.py``; what a record sends is still decided by the sync.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from cli.errors import stopped
from clients.errors import SyncError
from mappers.customer import CUSTOMER_MATCH, SITE_MATCH, st_company_to_add_customer
from mappers.job import job_numbers
from mappers.link import KeyIndex, Link, digits, job_candidates, name_address_key, verdict
from mappers.site import st_location_to_wo_site
from tasks import heal
from tasks.job import adopted_baseline
from tasks.state import CustomerState, JobState, SiteState, State
from worker.context import SyncContext
from worker.ledger import RecordKey, Status

#: a placeholder code: the requests are built only to compare names and addresses
_PLACEHOLDER = "LINK"
Progress = Callable[[str], None]


@dataclass
class LinkReport:
    connection: str
    links: list[Link] = field(default_factory=list)
    applied: int = 0

    def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for link in self.links:
            per = out.setdefault(link.kind, {})
            per[link.verdict] = per.get(link.verdict, 0) + 1
        return out


def _known(ctx: SyncContext, conn: str, kind: str, st_id: int) -> str | None:
    rec = ctx.ledger.get(RecordKey(conn, kind, str(st_id)))
    return rec.spectrum_key if rec is not None and rec.status is Status.DONE else None


def plan_links(
    ctx: SyncContext, connection: str | None = None, progress: Progress | None = None
) -> LinkReport:
    """Read both systems and decide, per ServiceTrade record, what it already is in Spectrum."""
    conn = ctx.connection(connection)
    rules = conn.rules
    infolink = ctx.infolink_for(conn.name)
    report = LinkReport(conn.name)
    tick = progress or (lambda _kind: None)

    customers = KeyIndex(infolink.list_customers(), name_address_key(CUSTOMER_MATCH))
    customer_of: dict[int, str] = {}
    for company in ctx.st.iter_companies():
        tick("customer")
        if company.is_customer is False:
            continue
        label = company.name
        known = _known(ctx, conn.name, "customer", company.id) or _existing(
            company.external_ids.get(conn.external_id_key), infolink.find_customer
        )
        if known:
            report.links.append(Link("customer", company.id, label, "linked", (known,)))
            customer_of[company.id] = known
            continue
        try:
            request, _ = st_company_to_add_customer(company, code=_PLACEHOLDER, rules=rules)
        except SyncError:
            report.links.append(Link("customer", company.id, label, "new"))
            continue
        link = verdict(
            "customer",
            company.id,
            label,
            customers.get(name_address_key(CUSTOMER_MATCH)(request.values)),
            "Customer_Code",
        )
        report.links.append(link)
        if link.code:
            customer_of[company.id] = link.code

    sites = KeyIndex(infolink.list_sites(), name_address_key(SITE_MATCH))
    for location in ctx.st.iter_locations():
        tick("site")
        label = location.name
        known = _known(ctx, conn.name, "site", location.id) or _existing(
            location.external_ids.get(conn.external_id_key), infolink.find_site
        )
        if known:
            report.links.append(Link("site", location.id, label, "linked", (known,)))
            continue
        customer = customer_of.get(location.company.id) if location.company else None
        try:
            request, _ = st_location_to_wo_site(
                location, site=_PLACEHOLDER, customer_code=customer or "", rules=rules
            )
        except SyncError:
            report.links.append(Link("site", location.id, label, "new"))
            continue
        found = sites.get(name_address_key(SITE_MATCH)(request.values))
        if customer:  # a site of the customer it is linked to, when that is known
            found = [
                r for r in found if str(r.get("Site_Customer_Code") or "").strip() in (customer, "")
            ] or found
        report.links.append(verdict("site", location.id, label, found, "Site_ID"))

    spectrum_jobs = infolink.list_jobs()
    by_number = {str(r["Job_Number"]).strip(): r for r in spectrum_jobs}
    by_digits = KeyIndex(spectrum_jobs, lambda r: digits(r.get("Job_Number")))
    for job in ctx.st.iter_jobs():
        tick("job")
        label = f"job {job.number}" + (f" {job.name}" if job.name else "")
        known = _known(ctx, conn.name, "job", job.id) or _existing(
            job.external_ids.get(conn.external_id_key), infolink.find_job
        )
        if known:
            report.links.append(Link("job", job.id, label, "linked", (known,)))
            continue
        ours: str | None
        try:
            cc = rules.cost_centers.default or (rules.cost_centers.codes or ["?"])[0]
            ours = next(iter(job_numbers(job.number, [cc], rules).values()))
        except SyncError:
            ours = None
        found = job_candidates(job.number, ours, by_number, by_digits)
        report.links.append(verdict("job", job.id, label, found, "Job_Number"))
    return report


def _existing(code: str | None, find: Callable[[str], Any]) -> str | None:
    code = (code or "").strip()
    return code if code and find(code) is not None else None


_ENTITY = {"customer": "company", "site": "location", "job": "job"}


def apply_links(ctx: SyncContext, report: LinkReport, progress: Progress | None = None) -> int:
    """Write the matched links: ServiceTrade ``externalIds`` and ``done`` ledger rows. Returns
    how many were written. Idempotent: a record already linked is left alone."""
    conn = ctx.connection(report.connection)
    applied = 0
    for link in report.links:
        if link.verdict != "matched" or link.code is None:
            continue
        key = RecordKey(conn.name, link.kind, str(link.st_id))
        if _known(ctx, conn.name, link.kind, link.st_id):
            continue
        ctx.st_writes.set_external_id(
            _ENTITY[link.kind], link.st_id, conn.external_id_key, link.code
        )
        state: State
        if link.kind == "site":
            state = SiteState(
                how="linked", customer=str(link.row.get("Site_Customer_Code") or "").strip()
            )
        elif link.kind == "job":
            cc = str(link.row.get("Cost_Center") or "").strip()
            state = JobState(
                how={link.code: "linked"},
                plan={cc: link.code},
                follow={link.code: adopted_baseline(ctx, conn.name, link.st_id)},
            )
        else:
            state = CustomerState(how="linked")
        fetches: dict[str, Callable[[int], Any]] = {
            "customer": ctx.st.get_company,
            "site": ctx.st.get_location,
            "job": ctx.st.get_job,
        }
        fetch = fetches[link.kind]
        # what the record says now: a later change (even within the second) is seen
        heal.stamp(state, fetch(link.st_id), conn, link.kind)
        ctx.ledger.ensure(key)
        ctx.ledger.mark_done(key, spectrum_key=link.code, state=state.dump(), step="linked")
        ctx.ledger.audit(
            system="stsync",
            service="link",
            outcome="linked",
            key=key,
            detail=f"linked to existing Spectrum {link.kind} {link.code}",
        )
        applied += 1
        if progress:
            progress(link.kind)
    report.applied = applied
    return applied


def review_table(report: LinkReport, *, show: Iterable[str] = ("matched", "ambiguous")) -> Table:
    """The review table: one row per matched/ambiguous record, then the totals."""
    table = Table(title=f"stsync link - connection {report.connection}")
    for col in ("record", "ServiceTrade", "verdict", "Spectrum"):
        table.add_column(col)
    wanted = set(show)
    for link in report.links:
        if link.verdict in wanted:
            table.add_row(
                f"{link.kind} {link.st_id}", link.label, link.verdict, ", ".join(link.codes)
            )
    for kind, counts in report.counts().items():
        table.add_row(kind, "total", ", ".join(f"{n} {v}" for v, n in sorted(counts.items())), "")
    return table


def register(
    app: typer.Typer,
    console_of: Callable[[], Console],
    context: Callable[[Any], Any],
    settings_of: Callable[[Any], Any],
) -> None:
    """Add ``stsync link`` to the command line (helpers looked up when the command runs)."""

    @app.command("link")
    def link(
        apply: Annotated[bool, typer.Option("--apply", help="write the matched links")] = False,
        all_rows: Annotated[bool, typer.Option("--all", help="list new records too")] = False,
        connection: Annotated[str | None, typer.Option("--connection", "-c")] = None,
        config: Annotated[Path | None, typer.Option("--config", "-C")] = None,
    ) -> None:
        """Match existing ServiceTrade records to existing Spectrum ones before the first sync."""
        from cli import progress as bars

        console = console_of()
        settings = settings_of(config)
        ctx = context(settings)
        try:
            with bars.spinner(console) as bar:
                seen: dict[str, int] = {}
                task = bar.add_task("reading ServiceTrade and Spectrum", total=None)

                def tick(kind: str) -> None:
                    seen[kind] = seen.get(kind, 0) + 1
                    bar.update(task, description=", ".join(f"{n} {k}s" for k, n in seen.items()))

                report = plan_links(ctx, connection, tick)
                if apply:
                    seen.clear()
                    apply_links(ctx, report, tick)
        except SyncError as exc:
            raise stopped("link", exc) from None
        finally:
            ctx.close()
        show = ("matched", "ambiguous", "new") if all_rows else ("matched", "ambiguous")
        console.print(review_table(report, show=show))
        if apply:
            console.print(f"{report.applied} link(s) written", highlight=False)
        else:
            console.print(
                "nothing written: run again with --apply to write the matched links",
                highlight=False,
            )
