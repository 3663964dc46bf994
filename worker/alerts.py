"""Alert e-mails to the people who run the integration (F14).

The pipeline *records* alerts in the ledger's ``alert`` table, one per distinct problem per record
(``tasks._pipeline.record_alert``; a repeat of the same problem adds nothing). This module mails the
unsent ones to the connection's ``support_emails`` over SMTP (``[alerts]``: host, port, STARTTLS,
login), either one e-mail per alert or, with ``alerts.digest_minutes = N``, at most one digest per
N minutes per connection listing every new problem (the last digest time is kept in the ledger's
``watermark`` table, so it holds across processes and restarts).

An alert is marked sent only once the SMTP server accepted its message. It is claimed first (a
conditional UPDATE), so two runs that overlap never mail it twice; a failed send releases the claim
and the next run (Beat, every minute) tries again; a run that dies between the claim and the send
loses that mail (never duplicates it), and ``stsync alerts list`` still shows the alert. Without an
SMTP host the alerts stay in the ledger, where ``stsync failures`` and ``stsync alerts list`` show
them (a warning is logged once).
Every subject and body goes through the log redaction: mails never carry a configured secret.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

from sqlalchemy import and_, update

from worker.ledger import Ledger, alert
from worker.logs import redact, secrets_of
from worker.settings import AlertSettings, Settings

log = logging.getLogger("stsync.alerts")

#: ledger watermark (per connection) holding the time of the last digest e-mail
DIGEST_WATERMARK = "alerts:last_digest"
#: seconds an SMTP conversation may stall before the run gives up (and retries next minute)
SMTP_TIMEOUT_S = 30.0

#: what each kind of alert means and what a person does about it
KIND_HINTS: dict[str, tuple[str, str]] = {
    "prerequisite": (
        "a record it depends on is missing",
        "Something this record needs (its customer, site or job, an employee, a salesperson's "
        "Spectrum code, a mapped code) is not in Spectrum or not mapped. Fix it as the message "
        "says, then replay the record.",
    ),
    "retries_exhausted": (
        "gave up after retrying",
        "stsync retried a temporary problem (network, Spectrum or ServiceTrade unavailable) for "
        "the whole retry period (reliability.retry_later_period_s, 72 h by default) without "
        "success. Once both systems answer again, replay the record.",
    ),
    "poison": (
        "the worker died on it",
        "The worker process died every time it ran this record. Look at the worker logs for the "
        "cause before replaying it.",
    ),
    "unknown": (
        "outcome unknown",
        "A write was sent without a clear answer and could not be checked. Look in Spectrum "
        "first: replaying it with --unknown when it did land posts it twice.",
    ),
    "drift": (
        "changed after it was posted",
        "The record changed in ServiceTrade after it reached Spectrum; stsync does not post it "
        "again. Correct it in Spectrum by hand.",
    ),
    "void_credit": (
        "void not credited",
        "The voided invoice could not be credited in Spectrum. Fix the cause, then replay the "
        "invoice.",
    ),
    # about a whole connection (record type "connection", worker/pause.py)
    "paused": (
        "connection paused: credentials refused",
        "Spectrum refused the connection's Authorization ID (or ServiceTrade its credentials). "
        "Its records wait, nothing is lost. Fix the credential or grant the web service, then run "
        "`stsync doctor`: when it passes the connection resumes and its records are sent again.",
    ),
    "configuration": (
        "Info-Link table or column missing",
        "Info-Link lacks a table or column stsync reads: check the connection's infolink_url and "
        "the login's rights (`stsync doctor` lists each table), then replay the failed records "
        "(`stsync retry --all-failed`).",
    ),
}

#: the ledger record type of alerts about a whole connection (worker/pause.py: CONNECTION)
CONNECTION_ALERT = "connection"


@dataclass(frozen=True)
class Alert:
    """One row of the ledger's ``alert`` table."""

    id: int
    at: datetime
    connection: str
    record_type: str
    source_id: str
    kind: str
    message: str
    sent_at: datetime | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Alert:
        at = row["at"]
        sent = row.get("sent_at")
        return cls(
            id=int(row["id"]),
            at=at if at.tzinfo else at.replace(tzinfo=UTC),
            connection=str(row["connection"]),
            record_type=str(row["record_type"]),
            source_id=str(row["source_id"]),
            kind=str(row["kind"]),
            message=str(row["message"]),
            sent_at=None if sent is None else (sent if sent.tzinfo else sent.replace(tzinfo=UTC)),
        )

    @property
    def record(self) -> str:
        return f"{self.connection}/{self.record_type}/{self.source_id}"


def kind_label(kind: str) -> str:
    return KIND_HINTS.get(kind, (kind.replace("_", " "), ""))[0]


def replay_command(a: Alert) -> str:
    """The ``stsync retry`` command that replays the alert's record once the cause is fixed."""
    flag = " --unknown" if a.kind == "unknown" else ""
    return f"stsync retry {a.record_type} {a.source_id} --connection {a.connection}{flag}"


def history_command(a: Alert) -> str:
    return f"stsync history {a.record_type} {a.source_id} --connection {a.connection}"


def _when(d: datetime) -> str:
    return d.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _indent(text: str, prefix: str = "  ") -> str:
    return "\n".join(prefix + line for line in text.splitlines() or [""])


def alert_body(a: Alert) -> str:
    """The plain-text explanation of one alert (an e-mail, or one section of a digest)."""
    hint = KIND_HINTS.get(a.kind, ("", "Fix the cause named above, then replay the record."))[1]
    return "\n".join(
        [
            f"Record:      {a.record_type} {a.source_id}   (connection {a.connection})",
            f"Problem:     {a.kind}: {kind_label(a.kind)}",
            f"Since:       {_when(a.at)}",
            "",
            "What happened:",
            _indent(a.message),
            "",
            "What to do:",
            _indent(hint),
            *(
                ["  Check it:                  stsync doctor"]
                if a.record_type == CONNECTION_ALERT
                else [
                    f"  Every step of the record:  {history_command(a)}",
                    f"  Replay it after the fix:   {replay_command(a)}",
                ]
            ),
        ]
    )


def _message(
    subject: str,
    body: str,
    *,
    sender: str,
    recipients: Sequence[str],
    ids: Sequence[int],
    scrub: Callable[[str], str],
    now: datetime,
) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = scrub(subject).replace("\n", " ")[:200]
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Date"] = format_datetime(now)
    domain = sender.rpartition("@")[2] or "stsync.local"
    msg["Message-ID"] = make_msgid("stsync-alert", domain=domain)
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Stsync-Alerts"] = ",".join(str(i) for i in ids)
    msg.set_content(scrub(body))
    return msg


def compose_alert(
    a: Alert,
    *,
    sender: str,
    recipients: Sequence[str],
    scrub: Callable[[str], str] = lambda s: s,
    now: datetime | None = None,
) -> EmailMessage:
    """One e-mail for one alert (per-problem mode)."""
    first = a.message.strip().splitlines()[0] if a.message.strip() else a.kind
    subject = f"[stsync {a.connection}] {a.record_type} {a.source_id}: {kind_label(a.kind)}"
    subject += f": {first[:100]}"
    body = (
        "stsync could not finish a record and needs a person.\n\n"
        + alert_body(a)
        + f"\n\nAlert #{a.id}. stsync mails each distinct problem of a record once.\n"
    )
    return _message(
        subject,
        body,
        sender=sender,
        recipients=recipients,
        ids=[a.id],
        scrub=scrub,
        now=now or datetime.now(UTC),
    )


def compose_digest(
    alerts: Sequence[Alert],
    *,
    connection: str,
    sender: str,
    recipients: Sequence[str],
    every_minutes: int,
    scrub: Callable[[str], str] = lambda s: s,
    now: datetime | None = None,
) -> EmailMessage:
    """One e-mail listing every new alert of a connection (digest mode)."""
    n = len(alerts)
    kinds = sorted({a.kind for a in alerts})
    subject = (
        f"[stsync {connection}] {n} new problem{'s' if n != 1 else ''} need a person "
        f"({', '.join(kinds)})"
    )
    lines = [
        f"stsync found {n} new problem{'s' if n != 1 else ''} on connection {connection} that "
        "need a person.",
        f"(Digest mode: at most one e-mail every {every_minutes} minutes; each distinct problem "
        "of a record is listed once.)",
        "",
        "Summary:",
    ]
    lines += [
        f"  {i}. {a.record_type} {a.source_id}: {kind_label(a.kind)}"
        for i, a in enumerate(alerts, 1)
    ]
    for i, a in enumerate(alerts, 1):
        lines += ["", "-" * 72, f"{i}. Alert #{a.id}", alert_body(a)]
    lines += ["", "List every record that needs attention:  stsync failures", ""]
    return _message(
        subject,
        "\n".join(lines),
        sender=sender,
        recipients=recipients,
        ids=[a.id for a in alerts],
        scrub=scrub,
        now=now or datetime.now(UTC),
    )


# --- SMTP -----------------------------------------------------------------------------------------
class SmtpSession:
    """One SMTP conversation: connect, EHLO, optional STARTTLS and login, then send messages.

    STARTTLS verifies the server's certificate with the system trust store (a private CA is set
    with the standard ``SSL_CERT_FILE`` environment variable).
    """

    def __init__(self, cfg: AlertSettings, *, timeout: float = SMTP_TIMEOUT_S) -> None:
        self.cfg = cfg
        self.smtp = smtplib.SMTP(cfg.smtp_host, cfg.smtp_port, timeout=timeout)
        try:
            self.smtp.ehlo()
            if cfg.starttls:
                self.smtp.starttls(context=ssl.create_default_context())
                self.smtp.ehlo()
            if cfg.username and cfg.password is not None:
                self.smtp.login(cfg.username, cfg.password.get_secret_value())
        except BaseException:
            self.smtp.close()
            raise

    def send(self, msg: EmailMessage, recipients: Sequence[str]) -> None:
        # a message is accepted when at least one recipient is (smtplib raises otherwise)
        self.smtp.send_message(msg, from_addr=self.cfg.sender, to_addrs=list(recipients))

    def close(self) -> None:
        try:
            self.smtp.quit()
        except (smtplib.SMTPException, OSError):
            self.smtp.close()


# --- the delivery run -----------------------------------------------------------------------------
@dataclass
class Delivery:
    """What one delivery run did."""

    mails: int = 0
    alerts_sent: int = 0
    #: alerts held back by the digest interval
    deferred: int = 0
    #: alerts left in the ledger because SMTP or the connection's recipients are not configured
    unmailed: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_warned: set[str] = set()


def _warn_once(key: str, message: str, **extra: Any) -> None:
    if key in _warned:
        return
    _warned.add(key)
    log.warning(message, extra={"outcome": "alerts_not_mailed", **extra})


def _claim(ledger: Ledger, ids: Sequence[int], now: datetime) -> list[int]:
    """Mark the alerts sent *now* unless another run has; the ids this run now owns."""
    owned: list[int] = []
    with ledger.tx() as conn:
        for alert_id in ids:
            res = conn.execute(
                update(alert)
                .where(and_(alert.c.id == alert_id, alert.c.sent_at.is_(None)))
                .values(sent_at=now)
            )
            if res.rowcount == 1:
                owned.append(alert_id)
    return owned


def _release(ledger: Ledger, ids: Sequence[int]) -> None:
    if not ids:
        return
    with ledger.tx() as conn:
        conn.execute(update(alert).where(alert.c.id.in_(list(ids))).values(sent_at=None))


Connect = Callable[[AlertSettings], SmtpSession]


def deliver_alerts(
    ledger: Ledger,
    settings: Settings,
    *,
    now: datetime | None = None,
    connect: Connect = SmtpSession,
) -> Delivery:
    """Mail the unsent alerts of every connection; see the module docstring. Idempotent."""
    now = now or datetime.now(UTC)
    cfg = settings.alerts
    result = Delivery()
    pending = [Alert.from_row(r) for r in ledger.unsent_alerts()]
    if not pending:
        return result
    if not cfg.smtp_host:
        result.unmailed = len(pending)
        _warn_once(
            "smtp",
            "alerts are not mailed: [alerts] smtp_host is not configured; they stay in the "
            "ledger (stsync failures / stsync alerts list)",
            waiting=len(pending),
        )
        return result
    secrets = secrets_of(settings)

    def scrub(text: str) -> str:
        return redact(text, secrets)

    by_conn: dict[str, list[Alert]] = {}
    for a in pending:
        by_conn.setdefault(a.connection, []).append(a)
    for name, alerts in sorted(by_conn.items()):
        conn = settings.connections.get(name)
        recipients = list(conn.support_emails) if conn is not None else []
        if not recipients:
            result.unmailed += len(alerts)
            _warn_once(
                f"recipients:{name}",
                f"alerts of connection {name!r} are not mailed: set "
                f"[connections.{name}] support_emails",
                connection=name,
                waiting=len(alerts),
            )
            continue
        try:
            if cfg.digest_minutes:
                _deliver_digest(
                    ledger, settings, name, alerts, recipients, now, connect, scrub, result
                )
            else:
                _deliver_each(ledger, settings, alerts, recipients, now, connect, scrub, result)
        except (smtplib.SMTPException, OSError) as exc:
            reason = scrub(f"{type(exc).__name__}: {exc}")[:300]
            result.errors.append(f"{name}: {reason}")
            log.warning(
                "alert mail not sent (will retry): %s",
                reason,
                extra={"connection": name, "outcome": "smtp_error"},
            )
    if result.mails:
        log.info(
            "alert mails sent",
            extra={"outcome": "alerts_mailed", "mails": result.mails, "alerts": result.alerts_sent},
        )
    return result


def _deliver_each(
    ledger: Ledger,
    settings: Settings,
    alerts: Sequence[Alert],
    recipients: Sequence[str],
    now: datetime,
    connect: Connect,
    scrub: Callable[[str], str],
    result: Delivery,
) -> None:
    owned = set(_claim(ledger, [a.id for a in alerts], now))
    mine = [a for a in alerts if a.id in owned]
    if not mine:
        return
    unsent = [a.id for a in mine]
    try:
        session = connect(settings.alerts)
        try:
            for a in mine:
                msg = compose_alert(
                    a, sender=settings.alerts.sender, recipients=recipients, scrub=scrub, now=now
                )
                session.send(msg, recipients)
                unsent.remove(a.id)
                result.mails += 1
                result.alerts_sent += 1
        finally:
            session.close()
    finally:
        _release(ledger, unsent)


def _deliver_digest(
    ledger: Ledger,
    settings: Settings,
    connection: str,
    alerts: Sequence[Alert],
    recipients: Sequence[str],
    now: datetime,
    connect: Connect,
    scrub: Callable[[str], str],
    result: Delivery,
) -> None:
    every = settings.alerts.digest_minutes
    last = ledger.get_watermark(connection, DIGEST_WATERMARK)
    if last:
        last_at = datetime.fromisoformat(last)
        if now < last_at + timedelta(minutes=every):
            result.deferred += len(alerts)
            return
    owned = set(_claim(ledger, [a.id for a in alerts], now))
    mine = [a for a in alerts if a.id in owned]
    if not mine:
        return
    sent = False
    try:
        msg = compose_digest(
            mine,
            connection=connection,
            sender=settings.alerts.sender,
            recipients=recipients,
            every_minutes=every,
            scrub=scrub,
            now=now,
        )
        session = connect(settings.alerts)
        try:
            session.send(msg, recipients)
        finally:
            session.close()
        sent = True
    finally:
        if not sent:
            _release(ledger, [a.id for a in mine])
    ledger.set_watermark(connection, DIGEST_WATERMARK, now.isoformat())
    result.mails += 1
    result.alerts_sent += len(mine)
