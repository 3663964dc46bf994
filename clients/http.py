"""Plumbing shared by the ServiceTrade and Spectrum clients: timeouts, retries, call records.

Both clients follow the same rules (DESIGN.md conventions 2, 3 and 6):

- every call has explicit timeouts (``connect`` short, ``read`` from the caller);
- failures are classified here, at the edge, into ``clients.errors`` classes;
- only safe-to-repeat calls (reads, Spectrum Get services, token requests) are retried inside the
  client, at most three attempts with jittered exponential waits; writes are never retried here;
- what an HTTP status means is one table, ``STATUS_POLICY`` (per kind of endpoint), turned into
  an error by ``status_error``; Spectrum's business errors inside HTTP 200 bodies are read a layer
  after it, by the Spectrum client;
- OAuth2 client credentials (and ServiceTrade's legacy session) are one ``httpx.Auth``,
  ``OAuth2ClientCredentials``: the token is cached, fetched again a margin before it expires, and a
  401 fetches a new one once and replays the request once;
- every HTTP exchange is reported to an optional ``on_call`` hook as a ``CallRecord`` (the ledger's
  audit trail, F19), reads included (a 401 answered before a replay too);
- credentials never appear in exception text, call records or logs (``Redactor``).
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, replace
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any, Final, Literal, TypeVar
from urllib.parse import quote, quote_plus

import httpx
import tenacity

from clients.digest import request_digest
from clients.errors import (
    AmbiguousWriteError,
    AuthorizationError,
    NotFound,
    PermanentError,
    RateLimited,
    SyncError,
    TransientError,
)

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


# --- what an HTTP status means ------------------------------------------------------------------
class Verdict(StrEnum):
    """What a client does with an answer, by its HTTP status."""

    OK = "ok"  # the client reads the body (Spectrum's business errors hide in there)
    REAUTHENTICATE = "reauthenticate"  # 401: the auth re-fetched and replayed once already
    DENIED = "denied"  # ``AuthorizationError``: credentials or rights; a person must act
    MISSING = "missing"  # ``NotFound``: the record does not exist
    THROTTLED = "throttled"  # ``RateLimited`` (transient) with ``retry_after``; nothing was done
    SERVER = "server"  # transient for a read, ``AmbiguousWriteError`` for a write
    REFUSED = "refused"  # ``PermanentError``: retrying the same request cannot help


class Endpoint(StrEnum):
    """Kinds of endpoint whose statuses mean different things."""

    RECORDS = "records"  # ServiceTrade's REST resources: a 404 is a record that does not exist
    SERVICES = "services"  # Spectrum's SOAP services and REST invoice import: a 404 is a wrong URL
    TOKEN = "token"  # noqa: S105 - OAuth2 token endpoints and ServiceTrade's session login


_OK, _REAUTH, _DENIED, _MISSING = (
    Verdict.OK,
    Verdict.REAUTHENTICATE,
    Verdict.DENIED,
    Verdict.MISSING,
)
_THROTTLED, _SERVER, _REFUSED = Verdict.THROTTLED, Verdict.SERVER, Verdict.REFUSED

#: The one status -> verdict table of both clients. Columns: ``Endpoint`` in declaration order
#: (records, services, token); rows: a status, or its class ("2xx", "5xx", "other").
STATUS_POLICY: Final[Mapping[int | str, tuple[Verdict, Verdict, Verdict]]] = {
    "2xx": (_OK, _OK, _OK),
    400: (_REFUSED, _REFUSED, _DENIED),  # OAuth2 says invalid_client/invalid_grant with a 400
    401: (_REAUTH, _REAUTH, _DENIED),
    403: (_DENIED, _DENIED, _DENIED),
    404: (_MISSING, _REFUSED, _REFUSED),
    408: (_SERVER, _SERVER, _SERVER),
    429: (_THROTTLED, _THROTTLED, _THROTTLED),
    "5xx": (_SERVER, _SERVER, _SERVER),
    "other": (_REFUSED, _REFUSED, _REFUSED),
}
_COLUMN: Final = {endpoint: i for i, endpoint in enumerate(Endpoint)}


def verdict(status: int, endpoint: Endpoint) -> Verdict:
    """What ``status`` means on ``endpoint`` (``STATUS_POLICY``)."""
    row = STATUS_POLICY.get(status)
    if row is None:
        status_class = "2xx" if 200 <= status < 300 else "5xx" if status >= 500 else "other"
        row = STATUS_POLICY[status_class]
    return row[_COLUMN[endpoint]]


def replayed(resp: httpx.Response) -> bool:
    """True when ``resp`` answers a request replayed after a 401 (``OAuth2ClientCredentials``)."""
    return any(r.status_code == 401 for r in resp.history)


def status_error(
    resp: httpx.Response, endpoint: Endpoint, message: str, *, write: bool
) -> SyncError:
    """The error of a non-OK answer, by ``verdict``; ``message`` names the call and the status.

    ``retry_after`` comes from the ``Retry-After`` header (429, and 408/5xx, reads and writes).
    """
    found = verdict(resp.status_code, endpoint)
    if found is Verdict.OK:
        raise ValueError(f"{message}: HTTP {resp.status_code} is a success, not an error")
    retry_after = retry_after_seconds(resp.headers.get("Retry-After"))
    if found is Verdict.REAUTHENTICATE:
        # a 401 reaching the client: no credential to renew (Basic), or refused again after a replay
        again = " (again after re-authenticating)" if replayed(resp) else ""
        return AuthorizationError(message + again)
    errors: dict[Verdict, Callable[[], SyncError]] = {
        Verdict.DENIED: lambda: AuthorizationError(message),
        Verdict.MISSING: lambda: NotFound(message),
        Verdict.THROTTLED: lambda: RateLimited(message, retry_after=retry_after),
        Verdict.SERVER: lambda: server_failure(message, write=write, retry_after=retry_after),
        Verdict.REFUSED: lambda: PermanentError(message),
    }
    return errors[found]()


# --- OAuth2 client credentials ---------------------------------------------------------------
@dataclass(frozen=True)
class Token:
    """A credential and when to fetch the next one (``time.time()`` seconds)."""

    value: str
    refresh_at: float = float("inf")


def jwt_exp(token: str) -> float | None:
    """The ``exp`` claim of a JWT access token (unverified: only used to schedule a refresh)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return float(exp) if isinstance(exp, int | float) else None


def token_from_answer(
    payload: Mapping[str, Any],
    *,
    what: str,
    margin_s: float,
    default_lifetime_s: float,
    use_jwt_exp: bool = False,
) -> Token:
    """The token of an OAuth2 token answer, refreshed ``margin_s`` (at most half its life) early.

    Its expiry: the JWT ``exp`` claim when ``use_jwt_exp`` and readable, else ``expires_in``, else
    ``default_lifetime_s``.
    """
    value = payload.get("access_token")
    if not isinstance(value, str) or not value:
        raise TransientError(f"{what}: the answer has no access_token")
    now = time.time()
    expires_at = jwt_exp(value) if use_jwt_exp else None
    if expires_at is None:
        expires_in = payload.get("expires_in")
        lifetime = (
            float(expires_in)
            if isinstance(expires_in, int | float) and expires_in > 0
            else default_lifetime_s
        )
        expires_at = now + lifetime
    margin = min(margin_s, max(0.0, expires_at - now) / 2)
    return Token(value, expires_at - margin)


def bearer(request: httpx.Request, token: str) -> None:
    request.headers["Authorization"] = f"Bearer {token}"


class OAuth2ClientCredentials(httpx.Auth):
    """OAuth2 client credentials as an ``httpx.Auth``: a cached token, refreshed early, one replay.

    ``fetch`` gets a new token (the client's own exchange with its token endpoint, so the request
    is classified, retried when safe and audited like any other); ``apply`` puts it on a request
    (a Bearer header; ServiceTrade's legacy session uses a cookie). A token is reused until its
    ``refresh_at``; a 401 drops it, fetches exactly one new one and replays the request once (a
    401 is refused before anything is done, so replaying a write is safe). A second 401 is
    returned to the client, which raises ``AuthorizationError`` (``status_error``): never a loop.
    Threads share one token; a 401 on a token another thread already replaced fetches nothing.
    """

    requires_request_body = True  # the replay is a copy of the request, body included
    requires_response_body = True  # the 401's connection is released before the token request

    def __init__(
        self,
        fetch: Callable[[], Token],
        *,
        apply: Callable[[httpx.Request, str], None] = bearer,
    ) -> None:
        self._fetch = fetch
        self._apply = apply
        self._lock = threading.RLock()
        self._token: Token | None = None

    def token(self) -> str:
        """The cached token, fetched first when there is none or it is due for a refresh."""
        with self._lock:
            if self._token is None or time.time() >= self._token.refresh_at:
                self._token = self._fetch()
            return self._token.value

    def cached(self) -> str | None:
        """The token held now, without fetching."""
        with self._lock:
            return self._token.value if self._token is not None else None

    def invalidate(self, stale: str | None = None) -> None:
        """Forget the token (only if it is still ``stale``, when given)."""
        with self._lock:
            if self._token is not None and (stale is None or self._token.value == stale):
                self._token = None

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        used = self.token()
        self._apply(request, used)
        response = yield request
        if response.status_code != 401:
            return
        self.invalidate(used)
        replay = httpx.Request(
            request.method,
            request.url,
            headers=request.headers,
            content=request.content,
            extensions=request.extensions,
        )
        self._apply(replay, self.token())
        yield replay


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
            # a SyncError raised in here comes from the credential exchange of the request's auth
            # (OAuth2ClientCredentials): that exchange reported itself and this call never left
            resp = self._http.request(method, url, **request)
        except httpx.TransportError as exc:
            failure = scrub(transport_failure(exc, what=what, write=write), redact)
            self._report(service, method, digest, started, status, failure, str(failure))
            raise failure from exc
        for refused in resp.history:  # a 401 answered before the auth replayed the request
            self._report(
                service,
                method,
                digest,
                started,
                refused.status_code,
                AuthorizationError("refused"),
                f"HTTP {refused.status_code}: credential refused; replayed with a new one",
            )
        status = resp.status_code
        try:
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
