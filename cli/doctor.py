"""``stsync doctor``: is this deployment able to work against the real accounts? (issue 14)

One line per check, exit code 1 when any fails:

- ServiceTrade: the credentials authenticate and an authenticated read answers;
- Spectrum, per connection, every web service stsync uses (``services_used``) with the
  connection's Authorization ID — Gets as a narrow read, Puts and the REST invoice service with a
  request whose required elements are all empty, which Spectrum refuses after its authorization
  check and which therefore writes nothing (``clients/spectrum/assumptions.py: PROBE_*``);
- Info-Link, per connection: the URL opens (driver installed) and every table stsync reads answers
  a one-row read naming every column stsync uses;
- invoice numbers, per connection without an ``invoices.numbers`` range: the pending invoices
  (one page) have ServiceTrade numbers, or ids, that fit Spectrum's numbers;
- the webhook: registered to the ingest's URL, enabled, exactly the entity types and actions.

A connection paused by a credential failure (``worker/pause.py``) whose checks all pass is resumed
and its paused records re-enqueued.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from sqlalchemy.exc import DBAPIError

from cli import webhook
from cli.errors import settings_or_exit
from clients.errors import (
    AuthorizationError,
    MappingError,
    PermanentError,
    SyncError,
    TransientError,
)
from clients.servicetrade.models import Invoice
from clients.spectrum import assumptions as sp_assume
from clients.spectrum.client import SpectrumClient
from clients.spectrum.infolink import InfoLinkReader
from clients.spectrum.models import ARInvoiceRequest, SpectrumRequest
from clients.spectrum.services import AR_MULTI_LINE_AUTH_NAME, SERVICES
from mappers.invoice import PENDING_ACCOUNTING, fallback_number_base, servicetrade_number_base
from mappers.rules import ConnectionRules, InvoiceRules
from worker.ledger import Ledger
from worker.settings import ConnectionSettings, Settings

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-C", help="stsync.toml (default: $STSYNC_CONFIG)")
]


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    what: str
    ok: bool
    detail: str
    connection: str | None = None

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.what}: {self.detail}"


# --- which Spectrum services stsync calls ---------------------------------------------------------
def services_used(rules: ConnectionRules) -> list[str]:
    """The Spectrum web services stsync calls for a connection with these rules, in call order."""
    names = ["AddCustomer", "AddWOSiteAddress"]
    if rules.mode == "jc":
        names += ["AddJob", "UpdateJob"]
        if rules.jobs.template_job:
            names += ["GetPhase", "AddPhase"]
    else:
        names.append("WorkOrderHeader")
    names += [AR_MULTI_LINE_AUTH_NAME, "PreTimeCard"]
    return names


def _probe_service(client: SpectrumClient, service: str) -> tuple[bool, str]:
    """``(authorized, detail)`` for one service, writing nothing (module docstring)."""
    try:
        if service == AR_MULTI_LINE_AUTH_NAME:
            # no lines and no header values: refused after the authorization check
            empty = ARInvoiceRequest.model_construct(
                header={"Invoice_Or_Transaction": ""}, details=[]
            )
            results = client.add_ar_invoices([empty])
            error = results[0].error if results else None
            if isinstance(error, AuthorizationError):
                return False, f"not authorized: {error}"
            return True, "authorized (empty probe refused as expected)"
        svc = SERVICES[service]
        if svc.type == "get":
            client.get(service, dict(sp_assume.PROBE_GET_PARAMS.get(service, {})))
            return True, "authorized (read answered)"
        # every required element empty: Spectrum refuses it after checking the authorization
        client.put(SpectrumRequest.model_construct(service=service, values={}))
        return True, "authorized (the empty probe was accepted: check Spectrum for a blank row)"
    except AuthorizationError as exc:
        return False, f"not authorized: {exc}"
    except PermanentError:
        return True, "authorized (empty probe refused as expected)"


def spectrum_checks(name: str, conn: ConnectionSettings, client: SpectrumClient) -> list[Check]:
    out = []
    for service in services_used(conn.rules):
        what = f"spectrum {name} {service}"
        try:
            ok, detail = _probe_service(client, service)
        except SyncError as exc:  # unreachable, a fault: not an authorization answer
            ok, detail = False, f"no answer: {exc}"
        out.append(Check(what, ok, detail, name))
    return out


def infolink_checks(name: str, conn: ConnectionSettings) -> list[Check]:
    what = f"infolink {name}"
    try:
        reader = InfoLinkReader(conn.infolink_url, conn.company_code)
    except SyncError as exc:
        return [Check(what, False, str(exc), name)]
    with reader:
        results = reader.check_tables()
    bad = [Check(f"{what} {table}", False, problem, name) for table, problem in results if problem]
    if bad:
        return bad
    detail = f"{len(results)} tables readable with every column stsync uses"
    return [Check(what, True, detail, name)]


# --- clients -------------------------------------------------------------------------------------
def spectrum_client(conn: ConnectionSettings, net: webhook.Transports) -> SpectrumClient:
    return SpectrumClient(
        conn.base_url,
        authorization_id=conn.authorization_id.get_secret_value(),
        company_code=conn.company_code,
        timeout_s=conn.timeout_s,
        connect_timeout_s=conn.connect_timeout_s,
        transport=net.spectrum,
        retry_wait_s=net.retry_wait_s,
    )


#: how many ``pending_accounting`` invoices ``invoice_number_checks`` looks at (one page)
NUMBER_SAMPLE = 100


def _number_unusable(invoice: Invoice, rules: InvoiceRules) -> bool:
    """Neither ServiceTrade's number nor its id can carry the Spectrum numbers (without a range)."""
    if servicetrade_number_base(invoice, rules) is not None:
        return False
    try:
        fallback_number_base(invoice, rules)
    except MappingError:
        return True
    return False


def invoice_number_checks(settings: Settings, invoices: Sequence[Invoice]) -> list[Check]:
    """Per connection without an ``invoices.numbers`` range: would these invoices get numbers?"""
    out = []
    for name, conn in settings.connections.items():
        rules = conn.rules.invoices
        what = f"invoice numbers {name}"
        if rules.numbers is not None:
            r = rules.numbers
            detail = f"a number ServiceTrade cannot give comes from {r.prefix}{r.start}..{r.end}"
            out.append(Check(what, True, detail, name))
            continue
        bad = [inv.id for inv in invoices if _number_unusable(inv, rules)]
        if bad:
            detail = (
                f"{len(bad)} of {len(invoices)} pending invoice(s) (e.g. {bad[0]}) have no usable "
                "ServiceTrade number and an id too long for Spectrum's 10 characters; set "
                f"[connections.{name}.invoices] numbers = {{ prefix, start, end, width }}"
            )
            out.append(Check(what, False, detail, name))
        else:
            detail = f"{len(invoices)} pending invoice(s) looked at: ServiceTrade's numbers fit"
            out.append(Check(what, True, detail, name))
    return out


def _pending_invoices(st: Any) -> list[Invoice]:
    return list(islice(st.iter_invoices(status=PENDING_ACCOUNTING), NUMBER_SAMPLE))


def run_checks(settings: Settings, public_url: str | None = None) -> Iterator[Check]:
    """Every check, in order (each yielded as soon as it is known)."""
    t = webhook.transports()
    with webhook.servicetrade_client(settings, t.servicetrade) as st:
        try:
            webhooks_ok = True
            st.list_webhooks()
            yield Check("servicetrade", True, f"authenticated ({settings.servicetrade.auth_mode})")
        except AuthorizationError as exc:
            webhooks_ok = False
            yield Check("servicetrade", False, f"credentials refused: {exc}")
        except (TransientError, PermanentError) as exc:
            webhooks_ok = False
            yield Check("servicetrade", False, f"no answer: {exc}")
        if webhooks_ok:
            try:
                yield from invoice_number_checks(settings, _pending_invoices(st))
            except SyncError as exc:
                yield Check("invoice numbers", False, f"cannot read pending invoices: {exc}")
        for name, conn in settings.connections.items():
            with spectrum_client(conn, t) as client:
                yield from spectrum_checks(name, conn, client)
            yield from infolink_checks(name, conn)
        try:
            url = webhook.hook_url(settings, public_url)
        except ValueError as exc:
            yield Check("webhook", False, str(exc))
            return
        if not webhooks_ok:
            yield Check("webhook", False, "not checked: ServiceTrade did not answer")
            return
        try:
            ok, detail = webhook.check(st, url)
        except SyncError as exc:
            ok, detail = False, f"cannot list webhooks: {exc}"
        yield Check("webhook", ok, detail)


def resume_passing(
    settings: Settings, checks: list[Check], enqueue: Callable[[str, tuple[Any, ...]], None]
) -> list[str]:
    """Resume the paused connections whose checks all passed; lines saying what was done."""
    from tasks.registry import replay_for
    from worker import pause

    st_ok = all(c.ok for c in checks if c.what == "servicetrade")
    lines = []
    ledger = Ledger(settings.database_url)
    try:
        try:
            paused = pause.paused_connections(ledger)
        except DBAPIError as exc:  # no ledger yet (before `stsync db upgrade`): nothing paused
            return [f"paused connections not checked: the ledger cannot be read ({exc.orig})"]
        for p in paused:
            own = [c for c in checks if c.connection == p.connection]
            if not (st_ok and own and all(c.ok for c in own)):
                continue
            records = pause.paused_records(ledger, p.connection)
            pause.resume(ledger, p.connection)
            sent = {
                r
                for r in (
                    replay_for(rec.key.record_type, rec.key.source_id, rec.key.connection)
                    for rec in records
                )
                if r is not None
            }
            for task, args in sorted(sent):
                enqueue(task, args)
            lines.append(f"resumed connection {p.connection!r}: {len(sent)} task(s) re-enqueued")
    finally:
        ledger.dispose()
    return lines


def print_paused(console: Console, ledger: Ledger, connection: str | None = None) -> None:
    """``stsync status``: the paused connections, with since when and why."""
    from worker import pause

    for p in pause.paused_connections(ledger):
        if connection and p.connection != connection:
            continue
        n = len(pause.paused_records(ledger, p.connection))
        console.print(
            f"connection {p.connection} PAUSED since {p.since:%Y-%m-%d %H:%M} UTC, "
            f"{n} record(s) waiting: {p.reason}",
            markup=False,
            highlight=False,
        )


def doctor(
    url: Annotated[
        str | None,
        typer.Option("--url", help="public base URL of the ingest (default: [ingest] public_url)"),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Check credentials, Spectrum web services, Info-Link tables and the webhook, one line each."""
    settings = settings_or_exit(config)
    checks: list[Check] = []
    for c in run_checks(settings, url):
        checks.append(c)
        typer.echo(c.line())
    failed = [c for c in checks if not c.ok]
    try:
        for line in resume_passing(settings, checks, _celery_enqueue(settings)):
            typer.echo(line)
    except Exception as exc:  # noqa: BLE001 - the report above stands; say why nothing resumed
        typer.echo(f"paused connections not resumed: {exc}")
    summary = f"{len(failed)} of {len(checks)} checks failed" if failed else "all checks passed"
    typer.echo(summary if failed else f"{summary} ({len(checks)})")
    if failed:
        raise typer.Exit(1)


def _celery_enqueue(settings: Settings) -> Callable[[str, tuple[Any, ...]], None]:
    """Send tasks by name through the configured broker (configured on first use)."""
    configured: list[Any] = []

    def enqueue(task: str, args: tuple[Any, ...]) -> None:
        if not configured:
            from worker.celery_app import configure

            configured.append(configure(settings))
        configured[0].send_task(task, args=args)

    return enqueue
