"""Plumbing shared by the ServiceTrade and Spectrum clients: timeouts, retries, call records.

Both clients follow the same rules (DESIGN.md conventions 2, 3 and 6):

- every call has explicit timeouts (``connect`` short, ``read`` from the caller);
- failures are classified here, at the edge, into ``clients.errors`` classes;
- only safe-to-repeat calls (reads, Spectrum Get services, token requests) are retried inside the
  client, at most three attempts with jittered exponential waits; writes are never retried here;
- every HTTP exchange is reported to an optional ``on_call`` hook as a ``CallRecord`` (the ledger's
  audit trail, F19), reads included;
- credentials never appear in exception text, call records or logs (``Redactor``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from email.utils import parsedate_to_datetime
from typing import Any, Literal, TypeVar
from urllib.parse import quote, quote_plus

import httpx
import tenacity

from clients.errors import AmbiguousWriteError, SyncError, TransientError
from clients.spectrum.models import request_digest

T = TypeVar("T")

Outcome = Literal["ok", "error", "ambiguous", "transient"]

#: Inline retries honour ``Retry-After`` up to this many seconds; a longer wait is left to Celery.
MAX_INLINE_RETRY_AFTER_S = 10.0
#: At most this many attempts of a safe-to-repeat call inside a client (C4).
MAX_ATTEMPTS = 3
#: ``CallRecord.detail`` is cut to this length (the ledger stores at most 2000 characters).
MAX_DETAIL = 500


@dataclass(frozen=True)
class CallRecord:
    """One HTTP exchange with ServiceTrade or Spectrum, as the audit trail records it.

    ``outcome``: ``ok``; ``error`` (refused for good: 4xx, validation rows); ``transient`` (worth
    retrying, nothing was changed); ``ambiguous`` (a write whose effect is unknown).
    ``request_digest`` identifies what was asked, never how (no credentials in it).
    """

    system: str
    service: str
    method: str
    request_digest: str
    outcome: str
    status: int | None
    duration_ms: float
    detail: str


CallHook = Callable[[CallRecord], None]


def make_timeout(read_s: float, connect_s: float) -> httpx.Timeout:
    """Read/write/pool timeouts of ``read_s``, connect timeout of ``connect_s``."""
    return httpx.Timeout(read_s, connect=connect_s)


# the audit and the ledger compare the same digest of what is sent (one definition, pure module)
json_digest = request_digest


class Redactor:
    """Replaces known secret values (raw and URL-encoded) with ``***`` in any text."""

    def __init__(
        self, secrets: Iterable[str | None] = (), *, parent: Redactor | None = None
    ) -> None:
        self._secrets: set[str] = set()
        self._parent = parent
        for s in secrets:
            self.add(s)

    def extended(self, extra: Iterable[str | None]) -> Redactor:
        """A redactor that hides ``extra`` as well as everything this one hides (now or later)."""
        return Redactor(extra, parent=self)

    def add(self, secret: str | None) -> None:
        # very short values would blank out ordinary words; real credentials are longer
        if secret and len(secret) >= 4:
            self._secrets.update({secret, quote(secret, safe=""), quote_plus(secret)})

    def __call__(self, text: str) -> str:
        for s in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(s, "***")
        return self._parent(text) if self._parent is not None else text


def scrub(exc: SyncError, redact: Redactor) -> SyncError:
    """Remove credentials from an error's message and Spectrum rows, in place.

    Servers echo what they were sent (an Authorization ID in a row's description, a token in an
    HTML error page); every error leaves a client through this.
    """
    clean = redact(exc.message)
    if clean != exc.message:
        exc.message = clean
        exc.args = (clean, *exc.args[1:])
    rows = getattr(exc, "rows", None)
    if rows:
        exc.rows = tuple(  # type: ignore[attr-defined]
            replace(r, description=redact(r.description), column=redact(r.column)) for r in rows
        )
    return exc


def outcome_of(exc: BaseException | None) -> Outcome:
    """The ``CallRecord.outcome`` of an exchange that ended with ``exc`` (None: success)."""
    if exc is None:
        return "ok"
    if isinstance(exc, AmbiguousWriteError):
        return "ambiguous"
    if isinstance(exc, TransientError):
        return "transient"
    return "error"


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def request_not_sent(exc: httpx.TransportError) -> bool:
    """True when httpx failed before any byte of the request could reach the server."""
    return isinstance(
        exc,
        httpx.ConnectError
        | httpx.ConnectTimeout
        | httpx.PoolTimeout
        | httpx.UnsupportedProtocol
        | httpx.LocalProtocolError,
    )


def transport_failure(exc: httpx.TransportError, *, what: str, write: bool) -> TransientError:
    """Classify an httpx transport failure.

    A write whose request may have reached the server is ambiguous (it may have been applied); a
    failure to connect at all is plainly transient, for reads and writes alike.
    """
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
    reason = f"{type(exc).__name__}: {exc}".rstrip(": ")
    if write and not request_not_sent(exc):
        return AmbiguousWriteError(
            f"{what} {kind} after the request was sent ({reason}); it may have been applied"
        )
    return TransientError(f"{what} {kind} ({reason})")


def server_failure(
    message: str, *, write: bool, retry_after: float | None = None
) -> TransientError:
    """A 5xx-like refusal: ambiguous for a write, transient for a read (either way carrying the
    server's ``Retry-After``, which the task's retry honours)."""
    if write:
        return AmbiguousWriteError(
            f"{message}; the write may have been applied", retry_after=retry_after
        )
    return TransientError(message, retry_after=retry_after)


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, TransientError) and not isinstance(exc, AmbiguousWriteError)


class _StopOnLongRetryAfter(tenacity.stop.stop_base):
    """Stop inline retries when the server asks for a longer pause than is worth blocking for."""

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        retry_after = getattr(exc, "retry_after", None)
        return retry_after is not None and retry_after > MAX_INLINE_RETRY_AFTER_S


def retrying(retry_wait_s: float) -> tenacity.Retrying:
    """Retry policy for safe-to-repeat calls: ≤3 attempts on ``TransientError`` only.

    Waits grow exponentially from ``retry_wait_s`` with jitter (tests pass 0: no waiting). A
    ``Retry-After`` up to ``MAX_INLINE_RETRY_AFTER_S`` is honoured; a longer one stops the inline
    retries and lets the error (with its ``retry_after``) reach the task's own retry.
    """
    base: Callable[[tenacity.RetryCallState], float]
    if retry_wait_s > 0:
        base = tenacity.wait_exponential_jitter(
            initial=retry_wait_s, max=retry_wait_s * 8, jitter=retry_wait_s
        )
    else:
        base = tenacity.wait_none()

    def wait(state: tenacity.RetryCallState) -> float:
        seconds = base(state)
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_wait_s > 0 and retry_after is not None:
            seconds = max(seconds, retry_after)
        return seconds

    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(_is_retryable),
        stop=tenacity.stop_after_attempt(MAX_ATTEMPTS) | _StopOnLongRetryAfter(),
        wait=wait,
        reraise=True,
    )


class Exchanger:
    """Sends one request, classifies the answer at the edge, reports the call to ``on_call``.

    Every exchange of a client goes through ``send``: transport failures become
    ``TransientError``/``AmbiguousWriteError``, ``classify`` turns the response into a result or a
    ``SyncError``, errors leave scrubbed of credentials, and one ``CallRecord`` is reported either
    way. The hook's own exceptions propagate: losing an audit record silently is worse than failing.
    """

    def __init__(
        self, http: httpx.Client, hook: CallHook | None, system: str, redact: Redactor
    ) -> None:
        self._http = http
        self._hook = hook
        self._system = system
        self._redact = redact

    def send(
        self,
        method: str,
        url: str,
        *,
        what: str,
        service: str,
        digest: str,
        write: bool,
        classify: Callable[[httpx.Response], T],
        describe: Callable[[T], tuple[str, SyncError | None]] | None = None,
        redact: Redactor | None = None,
        **request: Any,
    ) -> T:
        """``request`` goes to ``httpx.Client.request``; ``describe`` turns a result into the
        record's detail and, for results that carry refusals without raising (REST invoices), the
        error that sets the record's outcome."""
        redact = redact or self._redact
        started = time.perf_counter()
        status: int | None = None
        try:
            try:
                resp = self._http.request(method, url, **request)
            except httpx.TransportError as exc:
                raise transport_failure(exc, what=what, write=write) from exc
            status = resp.status_code
            result = classify(resp)
        except SyncError as exc:
            scrub(exc, redact)
            self._report(service, method, digest, started, status, exc, str(exc))
            raise
        detail, refusal = describe(result) if describe else ("", None)
        self._report(service, method, digest, started, status, refusal, redact(detail))
        return result

    def _report(
        self,
        service: str,
        method: str,
        digest: str,
        started: float,
        status: int | None,
        exc: BaseException | None,
        detail: str,
    ) -> None:
        if self._hook is None:
            return
        self._hook(
            CallRecord(
                system=self._system,
                service=service,
                method=method,
                request_digest=digest,
                outcome=outcome_of(exc),
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000.0, 3),
                detail=detail[:MAX_DETAIL],
            )
        )
