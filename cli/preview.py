"""Preview / dry run (F17): exactly what a record's sync would send, without writing anything.

``preview_record(ctx, record_type, record_id)`` runs the record's real ``sync_*`` function (from
``tasks.registry``) on a context whose *writers* record instead of sending (``worker.writers``)
and whose ledger is a scratch copy: an in-memory SQLite ledger that copies each row the sync
touches (and the code counters it draws from) from the real ledger on first use. Reads still go
to the real systems (ServiceTrade, Info-Link, the template job's ``GetPhase``). So the preview
makes the sync's own decisions — prerequisites first as the chain sends them, steps the ledger
holds as done skipped, an earlier write of unknown outcome looked up and adopted, the same
failure and skip reasons — and lists, in order, every write: Spectrum calls (SOAP Put services
and the REST invoice service, with their element values) and the write-backs to ServiceTrade.

Nothing is written: run it on a context built by ``preview_context``, whose ledger
(``ReadOnlyLedger``) refuses every write and drops the audit rows of the reads; the scratch ledger
is thrown away. Codes the ledger has not allocated yet are shown as the value the counter would
give next (skipping codes Spectrum already uses, as ``allocate_code`` does); the real counter is
not advanced, so a sync started later by someone else may take that code first.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

from cli.scratch import (
    REST_INVOICE_SERVICE,
    PlannedCall,
    PreviewWriteError,
    ReadOnlyLedger,
    Recorder,
    RecordingServiceTrade,
    RecordingSpectrum,
    ScratchLedger,
)
from clients.errors import RecordBusy, SyncError
from tasks import registry
from tasks.state import Result
from worker.context import SyncContext, build_context
from worker.ledger import RecordKey, Status
from worker.settings import Settings

__all__ = [
    "KINDS",
    "REST_INVOICE_SERVICE",
    "PlannedCall",
    "Preview",
    "PreviewWriteError",
    "ReadOnlyLedger",
    "preview_context",
    "preview_record",
]

PreviewStatus = Literal["would_send", "nothing_to_send", "skipped", "blocked", "partial"]

#: record types ``preview`` accepts (CLI names) -> the ledger record type previewed
KINDS: dict[str, str] = registry.PREVIEW_NAMES


def preview_context(settings: Settings, **build: Any) -> SyncContext:
    """A context for previews: the usual clients on a ``ReadOnlyLedger``; nothing is enqueued.

    ``build`` goes to ``build_context`` (tests pass the sandbox transports)."""

    def refuse(task: str, args: tuple[Any, ...]) -> None:
        raise PreviewWriteError(f"a preview must not enqueue {task}{args}")

    return build_context(
        settings, ledger=ReadOnlyLedger(settings.database_url), enqueue=refuse, **build
    )


@dataclass
class Preview:
    """What a sync of one record would do."""

    connection: str
    record_type: str
    record_id: str
    status: PreviewStatus = "would_send"
    reason: str = ""
    calls: list[PlannedCall] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: parts that could not be sent (e.g. one timecard entry), with the reason
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when everything could be sent (or nothing needs to be)."""
        return self.status in ("would_send", "nothing_to_send")

    def spectrum_calls(self) -> list[PlannedCall]:
        return [c for c in self.calls if c.system == "spectrum"]

    def as_dict(self) -> dict[str, Any]:
        return {
            "connection": self.connection,
            "record_type": self.record_type,
            "record_id": self.record_id,
            "status": self.status,
            "ok": self.ok,
            "reason": self.reason,
            "calls": [c.as_dict() for c in self.calls],
            "notes": self.notes,
            "problems": self.problems,
        }


#: the ledger's error kind -> the error class people know it by
_ERROR_NAMES = {"prerequisite": "PrerequisiteMissing"}


def preview_record(
    ctx: SyncContext,
    record_type: str,
    record_id: int,
    connection: str | None = None,
    *,
    recheck_unknown: bool = False,
) -> Preview:
    """What syncing ``record_type`` ``record_id`` on ``connection`` would send; writes nothing."""
    kind = KINDS.get(record_type)
    if kind is None:
        raise ValueError(f"unknown record type {record_type!r}; one of: {', '.join(sorted(KINDS))}")
    conn = ctx.connection(connection)
    rt = registry.BY_NAME[kind]
    scratch = ScratchLedger(ctx.ledger)
    recorder = Recorder()
    pctx = replace(
        ctx,
        ledger=scratch,
        spectrum_writers={
            name: RecordingSpectrum(recorder, ctx.infolink_for(name)) for name in ctx.spectrum
        },
        st_writer=RecordingServiceTrade(recorder),
    )
    preview = Preview(conn.name, kind, str(record_id))
    key = RecordKey(conn.name, kind, str(record_id))
    before = scratch.get(key)
    if before is not None and before.status in (Status.FAILED, Status.UNKNOWN):
        # what `stsync retry` does first; a normal sync leaves the record as it is
        scratch.reopen(key)
        preview.notes.append(
            f"{key} is {before.status.value} ({before.last_error or '-'}); a normal sync "
            "leaves it so: this is what `stsync retry` would send"
        )
    options = {"recheck_unknown": recheck_unknown} if kind == registry.TIMECARD.name else {}
    try:
        outcome = rt.sync_function()(pctx, record_id, conn.name, **options)
    except RecordBusy as exc:
        preview.status, preview.reason = "blocked", f"busy: {exc}"
    except SyncError as exc:
        preview.status, preview.reason = "blocked", f"{type(exc).__name__}: {exc}"
    else:
        preview.problems = _failed_parts(scratch, rt, key)
        _judge(
            preview,
            scratch,
            outcome.result,
            outcome.key,
            outcome.spectrum_key,
            outcome.message,
            has_calls=bool(recorder.calls),
        )
    preview.calls = recorder.calls
    preview.notes.extend(
        f"{k}: {code} is the next {k.record_type} code the counter would give (a preview does "
        "not reserve it)"
        for k, code in scratch.new_codes()
    )
    scratch.dispose()
    return preview


def _judge(
    preview: Preview,
    scratch: ScratchLedger,
    result: Result,
    key: RecordKey,
    spectrum_key: str | None,
    message: str,
    *,
    has_calls: bool,
) -> None:
    """The preview's status and reason from the sync's outcome (and what it would send)."""
    if result is Result.SKIPPED:
        preview.status, preview.reason = "skipped", message
    elif not result.ok:
        if preview.problems:
            preview.status = "partial" if has_calls else "blocked"
            preview.reason = f"{len(preview.problems)} part(s) could not be sent"
        else:
            rec = scratch.get(key)
            kind = rec.error_kind if rec is not None and rec.error_kind else result.value
            preview.status = "blocked"
            preview.reason = f"{_ERROR_NAMES.get(kind, kind)}: {message}"
    elif has_calls:
        preview.reason = message
    else:
        preview.status = "nothing_to_send"
        preview.reason = f"already in Spectrum as {spectrum_key or '-'}" + (
            f" ({message})" if message else ""
        )
    if result is Result.ADOPTED:
        preview.notes.append(
            f"{key}: Spectrum already has it ({message or spectrum_key}); "
            "it would be adopted, not sent again"
        )


def _failed_parts(scratch: ScratchLedger, rt: registry.RecordType, key: RecordKey) -> list[str]:
    """The record's parts (timecard entries) the sync left failed or unknown, with the reason."""
    out = []
    for part in rt.parts:
        rows = scratch.list_records(
            statuses=(Status.FAILED, Status.UNKNOWN),
            connection=key.connection,
            record_type=part,
            limit=100_000,
        )
        out += [
            f"{r.key}: {r.last_error}"
            for r in sorted(rows, key=lambda r: r.id)
            if r.key.source_id.startswith(f"{key.source_id}:")
        ]
    return out
