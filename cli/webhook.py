"""``stsync webhook register | show | remove``: stsync's one ServiceTrade webhook (issue 14).

The webhook carries exactly what stsync syncs from: the entity types of
``clients.servicetrade.assumptions.webhook_entity_types`` and the actions of
``tasks.registry.SYNC_ACTIONS`` (deletions are not propagated). Its URL is the ingest's public base
(``[ingest] public_url`` or ``--url``) + ``/webhooks/servicetrade/<WEBHOOK_SECRET>``; the secret
is never printed. ServiceTrade cannot change a webhook's URL, so a registration that is wrong
(disabled, other entities or actions) is deleted and registered again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from cli.errors import settings_or_exit
from clients.errors import SyncError
from clients.servicetrade import assumptions as st_assume
from clients.servicetrade.client import ServiceTradeClient
from tasks.registry import SYNC_ACTIONS
from worker.settings import Settings

#: the ingest's webhook path (``ingest/app.py``)
HOOK_PATH = "/webhooks/servicetrade/"

webhook_app = typer.Typer(
    help="Register, show or remove stsync's ServiceTrade webhook.", no_args_is_help=True
)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-C", help="stsync.toml (default: $STSYNC_CONFIG)")
]
UrlOpt = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="public https base URL of the ingest, e.g. https://sync.example.com "
        "(default: [ingest] public_url)",
    ),
]


def wanted_events() -> dict[int, list[str]]:
    """``{entity type number: actions}``: exactly what stsync syncs from."""
    actions = sorted(SYNC_ACTIONS)
    return {number: list(actions) for number in st_assume.webhook_entity_types().values()}


def hook_url(settings: Settings, public_url: str | None) -> str:
    """The full webhook URL (with the secret); ``ValueError`` when no public URL is known."""
    base = (public_url or settings.ingest.public_url).strip().rstrip("/")
    if not base:
        raise ValueError(
            "the ingest's public URL is not set: give --url https://sync.example.com or set "
            "[ingest] public_url"
        )
    return base + HOOK_PATH + settings.webhook_secret.get_secret_value()


def masked(url: str) -> str:
    """A hook URL with its last path segment (the ingest secret) hidden."""
    head, sep, _ = str(url).rstrip("/").rpartition("/")
    return f"{head}{sep}<secret>" if HOOK_PATH.rstrip("/") in head else str(url)


def _events_of(webhook: Mapping[str, Any]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for item in webhook.get("entityEvents") or []:
        if not isinstance(item, Mapping):
            continue
        try:
            number = int(item.get("entityType"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        actions = item.get(st_assume.WEBHOOK_ACTIONS_KEY) or []
        if isinstance(actions, str):
            actions = [a.strip() for a in actions.split(",")]
        out[number] = sorted({str(a) for a in actions if str(a)})
    return out


@dataclass(frozen=True)
class Registration:
    """What is wrong with a registered webhook compared with what stsync needs (empty: right)."""

    webhook: Mapping[str, Any]
    problems: tuple[str, ...]

    @property
    def id(self) -> int:
        return int(self.webhook.get("id") or 0)

    @property
    def ok(self) -> bool:
        return not self.problems


def _names() -> dict[int, str]:
    return {n: name for name, n in st_assume.webhook_entity_types().items()}


def compare(webhook: Mapping[str, Any]) -> Registration:
    """Enabled, and exactly the wanted entity types and actions."""
    problems: list[str] = []
    if webhook.get("enabled") is not True:
        problems.append("disabled")
    have, want, names = _events_of(webhook), wanted_events(), _names()
    for number, actions in sorted(want.items()):
        got = have.get(number)
        label = f"{names.get(number, number)} ({number})"
        if got is None:
            problems.append(f"entity {label} missing")
        elif got != actions:
            problems.append(f"entity {label} actions {got} (need {actions})")
    for number in sorted(set(have) - set(want)):
        problems.append(f"entity type {number} not needed")
    return Registration(webhook, tuple(problems))


def find(webhooks: Sequence[Mapping[str, Any]], url: str) -> list[Registration]:
    """stsync's registrations among ``webhooks`` (those posting to ``url``)."""
    return [compare(w) for w in webhooks if str(w.get("hookUrl", "")).rstrip("/") == url]


def check(st: ServiceTradeClient, url: str) -> tuple[bool, str]:
    """``(ok, one line)`` about stsync's webhook registration (``stsync doctor``)."""
    regs = find(st.list_webhooks(), url)
    if not regs:
        return False, f"no webhook posts to {masked(url)}: run `stsync webhook register`"
    good = [r for r in regs if r.ok]
    if good:
        extra = f" ({len(regs) - 1} more to the same URL)" if len(regs) > 1 else ""
        return True, f"webhook {good[0].id} posts to {masked(url)}, enabled, events right{extra}"
    bad = regs[0]
    return False, (
        f"webhook {bad.id} posts to {masked(url)} but: {'; '.join(bad.problems)}: run "
        "`stsync webhook register`"
    )


def register(st: ServiceTradeClient, url: str) -> tuple[str, int]:
    """Make sure exactly one right registration exists; ``(what was done, webhook id)``."""
    regs = find(st.list_webhooks(), url)
    good = [r for r in regs if r.ok]
    for r in regs:
        if r is not (good[0] if good else None):
            st.delete_webhook(r.id)
    if good:
        return "already registered", good[0].id
    created = st.register_webhook(url, wanted_events())
    return ("re-registered" if regs else "registered"), int(created.get("id") or 0)


# --- clients and settings for the commands (doctor uses them too) ---------------------------------
@dataclass(frozen=True)
class Transports:
    """HTTP transports of the clients (tests plug the in-process sandbox in)."""

    servicetrade: httpx.BaseTransport | None = None
    spectrum: httpx.BaseTransport | None = None
    #: first wait before an inline retry of a read (in-process tests: none)
    retry_wait_s: float = 0.5


def transports() -> Transports:
    """The real network (tests replace this function)."""
    return Transports()


def servicetrade_client(
    settings: Settings, transport: httpx.BaseTransport | None = None
) -> ServiceTradeClient:
    net = transports()
    return ServiceTradeClient(
        **settings.servicetrade.client_options(),
        transport=transport or net.servicetrade,
        retry_wait_s=net.retry_wait_s,
    )


# --- commands ------------------------------------------------------------------------------------
def _st(settings: Settings) -> ServiceTradeClient:
    return servicetrade_client(settings)


def _url_or_exit(settings: Settings, public_url: str | None) -> str:
    try:
        return hook_url(settings, public_url)
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


@webhook_app.command("register")
def register_command(url: UrlOpt = None, config: ConfigOpt = None) -> None:
    """Register the webhook with exactly the entity types and actions stsync needs."""
    settings = settings_or_exit(config)
    full = _url_or_exit(settings, url)
    try:
        with _st(settings) as st:
            done, webhook_id = register(st, full)
    except SyncError as exc:
        typer.echo(f"webhook register failed: {exc}", err=True)
        raise typer.Exit(1) from None
    names = ", ".join(st_assume.webhook_entity_types())
    actions = ", ".join(sorted(SYNC_ACTIONS))
    typer.echo(f"{done}: webhook {webhook_id} -> {masked(full)} ({names}: {actions})")


@webhook_app.command("show")
def show_command(url: UrlOpt = None, config: ConfigOpt = None) -> None:
    """List the account's webhooks; stsync's is marked, with what is wrong with it."""
    settings = settings_or_exit(config)
    mine = None
    if url or settings.ingest.public_url:
        mine = _url_or_exit(settings, url)
    try:
        with _st(settings) as st:
            webhooks = st.list_webhooks()
    except SyncError as exc:
        typer.echo(f"cannot list webhooks: {exc}", err=True)
        raise typer.Exit(1) from None
    names = _names()
    if not webhooks:
        typer.echo("no webhooks registered")
    for w in webhooks:
        reg = compare(w)
        hook = str(w.get("hookUrl", ""))
        tag = ""
        if mine is not None and hook.rstrip("/") == mine:
            tag = " [stsync: ok]" if reg.ok else f" [stsync: {'; '.join(reg.problems)}]"
        events = "; ".join(
            f"{names.get(n, n)}: {','.join(a)}" for n, a in sorted(_events_of(w).items())
        )
        state = "enabled" if w.get("enabled") is True else "disabled"
        typer.echo(f"{w.get('id')} {masked(hook)} {state} {events}{tag}")
    if mine is not None and not find(webhooks, mine):
        typer.echo(f"stsync's webhook ({masked(mine)}) is not registered")
        raise typer.Exit(1)


@webhook_app.command("remove")
def remove_command(
    url: UrlOpt = None,
    webhook_id: Annotated[
        int | None, typer.Option("--id", help="remove this webhook id instead")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Remove stsync's webhook (every registration posting to its URL), or one by id."""
    settings = settings_or_exit(config)
    try:
        with _st(settings) as st:
            if webhook_id is not None:
                ids = [webhook_id]
            else:
                ids = [r.id for r in find(st.list_webhooks(), _url_or_exit(settings, url))]
            for i in ids:
                st.delete_webhook(i)
    except SyncError as exc:
        typer.echo(f"webhook remove failed: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"removed webhook(s) {', '.join(map(str, ids))}" if ids else "nothing to remove")
