"""The one error taxonomy of stsync, raised at the client edge and read by the pipeline.

Clients translate HTTP statuses, transport failures, SOAP faults and Spectrum's ``error_code`` rows
(which arrive inside HTTP 200 bodies) into these classes. Tasks never look at HTTP codes: they let
``TransientError`` through to Celery's ``autoretry_for`` and record everything else in the ledger.

Mappers raise ``MappingError`` (a ``PermanentError``) naming the record and the field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ErrorRow:
    """One Spectrum ``response`` row: ``error_code`` (A/I/M/E/W), description and column."""

    code: str
    description: str
    column: str = ""

    def __str__(self) -> str:
        where = f" [{self.column}]" if self.column else ""
        return f"{self.code}: {self.description}{where}"


class SyncError(Exception):
    """Base of every error stsync raises on purpose."""

    def __init__(self, message: str, *, field: str | None = None, value: object = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.value = value

    def __str__(self) -> str:
        return self.message


class TransientError(SyncError):
    """Worth retrying later: network trouble, 5xx, 429, SOAP server fault, a busy record."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        field: str | None = None,
        value: object = None,
    ) -> None:
        super().__init__(message, field=field, value=value)
        self.retry_after = retry_after


class AmbiguousWriteError(TransientError):
    """A write was sent but its outcome is unknown (timeout after send, fault, dropped reply).

    The remote system may have committed it (a "ghost write"). Callers that have a natural key
    look the record up before writing again (create-or-adopt); callers without one (PreTimeCard)
    look for their marker and otherwise mark the record ``unknown`` for a person.
    """


class RateLimited(TransientError):
    """HTTP 429: the server asks the caller to slow down (``retry_after``: for how long). For
    ServiceTrade this concerns the whole account: every worker pauses (worker/pacing.py)."""


class RecordBusy(TransientError):
    """Another worker holds this record's claim; try again after its lease."""


class PermanentError(SyncError):
    """Retrying cannot help until a person changes something (data, config, Spectrum setup)."""

    def __init__(
        self,
        message: str,
        *,
        rows: Sequence[ErrorRow] = (),
        field: str | None = None,
        value: object = None,
    ) -> None:
        super().__init__(message, field=field, value=value)
        self.rows = tuple(rows)


class AuthorizationError(PermanentError):
    """Spectrum ``A`` rows, ServiceTrade 401 after re-login or 403: credentials or authorization."""


class InfoLinkSchemaError(PermanentError):
    """Info-Link lacks a table or column stsync reads: the connection's configuration is wrong.

    Permanent for the record (retrying reads the same missing table) and one alert for the
    connection; ``stsync doctor`` reports it. Not "Info-Link unreachable".
    """


class AlreadyExists(PermanentError):
    """Spectrum refused an add because the key exists (``I`` row on a unique key column)."""


class NotFound(PermanentError):
    """The remote record does not exist (ServiceTrade 404)."""


class PrerequisiteMissing(PermanentError):
    """The record cannot be synced until another record or mapping exists (alert a person).

    ``waits_on`` names what it waits for when the field/value pair does not say it
    (``"user:42"``: the technician or salesperson whose ServiceTrade user a person must fix); a
    change of that record wakes the failed record (F21, tasks/heal.py).
    """

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        value: object = None,
        waits_on: str | None = None,
    ) -> None:
        super().__init__(message, field=field, value=value)
        self.waits_on = waits_on


class MappingError(PermanentError):
    """A mapper could not build a valid Spectrum request; names the record and the field."""

    def __init__(self, record: str, field: str, message: str, *, value: object = None) -> None:
        super().__init__(f"{record}: {field}: {message}", field=field, value=value)
        self.record = record


class RecordSkipped(SyncError):
    """The record is deliberately not synced (ignored job type, already credited invoice ...)."""


class ConfigError(SyncError):
    """The configuration is wrong; names the key, the value and what is allowed."""
