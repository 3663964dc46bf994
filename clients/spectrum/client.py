"""Spectrum Data Exchange client: SOAP Put/Get services and the REST multi-line invoice service.

- ``put``: one record through a SOAP Put service. Never retried here: a fault, 5xx, timeout after
  sending or a cut-off answer raises ``AmbiguousWriteError`` (the record may exist now; the ledger
  decides what to do). One GUID per client instance groups the Puts of a batch; it is renewed after
  23 h, or when Spectrum answers "Time out has occurred" — then that Put, which did not land, is
  sent once more with the new GUID.
- ``get``: a SOAP Get service, a fresh GUID per call, retried (≤3 attempts) on transient failures.
- ``add_ar_invoices``: ``POST /customer/invoice`` through the one adapter in ``rest_invoice``.

Spectrum reports business errors inside HTTP 200 bodies: every answer is read and classified
(``soap.classify_put_rows`` / ``classify_get_rows``). HTTP Basic ``Company_Code:Authorization_ID``
is sent on every call (required on REST, harmless on SOAP); with Enhanced Authentication a Bearer
token from ``/connect/token`` replaces it (``clients.http.OAuth2ClientCredentials``: cached,
refreshed early, one re-fetch and replay on 401). HTTP statuses mean what
``clients.http.STATUS_POLICY`` says for services (a 404 is a wrong URL, not a missing record); the
SOAP body is read after that.
Every exchange is reported to ``on_call``.
"""

from __future__ import annotations

import base64
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from types import TracebackType
from typing import TypeVar

import httpx

from clients.errors import (
    AmbiguousWriteError,
    AuthorizationError,
    ConfigError,
    ErrorRow,
    PermanentError,
    SyncError,
    TransientError,
)
from clients.http import (
    CallHook,
    Endpoint,
    Exchanger,
    OAuth2ClientCredentials,
    Redactor,
    Token,
    Verdict,
    json_digest,
    make_timeout,
    retry_after_seconds,
    retrying,
    scrub,
    server_failure,
    status_error,
    token_from_answer,
    verdict,
)
from clients.spectrum import assumptions as shared
from clients.spectrum import rest_invoice
from clients.spectrum.models import ARInvoiceRequest, SpectrumRequest
from clients.spectrum.rest_invoice import ARInvoiceResult
from clients.spectrum.services import SERVICES, Service
from clients.spectrum.soap import (
    GetResult,
    MalformedSoapError,
    PutResult,
    SoapResponse,
    build_envelope,
    classify_get_rows,
    classify_put_rows,
    is_client_fault,
    is_guid_timeout,
    parse_response,
)

SYSTEM = "spectrum"
#: A batch GUID expires after ~24 h of inactivity (reference §2); renew it a little earlier.
GUID_MAX_AGE_S = shared.GUID_RENEW_AFTER.total_seconds()
#: Enhanced Authentication (reference §2).
TOKEN_PATH = shared.TOKEN_PATH
TOKEN_SCOPE = shared.TOKEN_SCOPE
TOKEN_REFRESH_MARGIN_S = 300.0
TOKEN_DEFAULT_LIFETIME_S = 3600.0

T = TypeVar("T")


class _GuidExpiredError(TransientError):
    """Spectrum answered "Time out has occurred": the GUID expired and nothing was done."""


def _soap_answer(resp: httpx.Response, svc: Service, what: str, write: bool) -> SoapResponse:
    """The parsed SOAP answer of an HTTP exchange, or the classified error of the exchange."""
    status = resp.status_code
    found = verdict(status, Endpoint.SERVICES)
    if found in (Verdict.REAUTHENTICATE, Verdict.DENIED):
        raise status_error(
            resp,
            Endpoint.SERVICES,
            f"{what}: HTTP {status}: Spectrum refused the credentials",
            write=write,
        )
    if status == 404:
        raise status_error(
            resp,
            Endpoint.SERVICES,
            f"{what}: HTTP 404: no web service at /ws/{svc.name} (base URL?)",
            write=write,
        )
    server_side = found is Verdict.SERVER
    if found not in (Verdict.OK, Verdict.SERVER):
        raise status_error(resp, Endpoint.SERVICES, f"{what}: HTTP {status}", write=write)
    # a 5xx may carry a SOAP fault that says more (an expired GUID, a client fault): read it first
    try:
        answer = parse_response(resp.content, svc)
    except MalformedSoapError as exc:
        raise server_failure(f"{what}: HTTP {status}: {exc}", write=write) from exc
    if answer.fault is not None:
        if is_guid_timeout(answer):
            raise _GuidExpiredError(f"{what}: Time out has occurred (GUID expired)")
        code, text = answer.fault
        message = f"{what}: SOAP fault {code}: {text}"
        if is_client_fault(answer.fault):
            raise PermanentError(message)
        # a server fault may say when to come back (Retry-After on the 5xx)
        after = retry_after_seconds(resp.headers.get("Retry-After")) if server_side else None
        raise server_failure(message, write=write, retry_after=after)
    if server_side:
        raise status_error(resp, Endpoint.SERVICES, f"{what}: HTTP {status}", write=write)
    return answer


class SpectrumClient:
    """One Spectrum company on one Data Exchange server. One per worker process; close it."""

    def __init__(
        self,
        base_url: str,
        *,
        authorization_id: str,
        company_code: str,
        timeout_s: float = 30.0,
        connect_timeout_s: float = 5.0,
        transport: httpx.BaseTransport | None = None,
        retry_wait_s: float = 1.0,
        on_call: CallHook | None = None,
        enhanced_auth: tuple[str, str] | None = None,
    ) -> None:
        if not authorization_id:
            raise ConfigError("SpectrumClient needs an authorization_id")
        if not company_code:
            raise ConfigError("SpectrumClient needs a company_code")
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            timeout=make_timeout(timeout_s, connect_timeout_s),
            transport=transport,
            headers={"User-Agent": "stsync"},
            follow_redirects=False,
        )
        self._authorization_id = authorization_id
        self._company_code = company_code
        self._enhanced_auth = enhanced_auth
        basic = base64.b64encode(f"{company_code}:{authorization_id}".encode()).decode()
        self._basic_header = f"Basic {basic}"
        self._redact = Redactor(
            [authorization_id, basic, enhanced_auth[1] if enhanced_auth else None]
        )
        self._wire = Exchanger(self._http, on_call, SYSTEM, self._redact)
        self._retry_wait_s = retry_wait_s
        self._lock = threading.RLock()
        self._guid = str(uuid.uuid4())
        self._guid_born = time.time()
        self._auth: OAuth2ClientCredentials | None = None
        if enhanced_auth is not None:
            self._auth = OAuth2ClientCredentials(lambda: retrying(retry_wait_s)(self._fetch_token))

    @property
    def company_code(self) -> str:
        return self._company_code

    @property
    def batch_guid(self) -> str:
        """The GUID the next Put will carry."""
        with self._lock:
            if time.time() - self._guid_born >= GUID_MAX_AGE_S:
                self._renew_guid()
            return self._guid

    def _renew_guid(self) -> str:
        with self._lock:
            self._guid = str(uuid.uuid4())
            self._guid_born = time.time()
            return self._guid

    # --- lifecycle ------------------------------------------------------------------------------
    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SpectrumClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- authentication ---------------------------------------------------------------------------
    def _auth_headers(self, *, rest: bool) -> dict[str, str]:
        """Basic on every call; with Enhanced Authentication the Bearer comes from ``self._auth``
        (and REST still names the company and the Authorization ID)."""
        if self._auth is None:
            return {"Authorization": self._basic_header}
        if not rest:
            return {}
        return {
            rest_invoice.COMPANY_HEADER: self._company_code,
            rest_invoice.AUTHORIZATION_ID_HEADER: self._authorization_id,
        }

    def _fetch_token(self) -> Token:
        assert self._enhanced_auth is not None
        client_id, client_secret = self._enhanced_auth
        what = f"Spectrum POST {TOKEN_PATH}"

        def classify(resp: httpx.Response) -> dict[str, object]:
            status = resp.status_code
            found = verdict(status, Endpoint.TOKEN)
            if found is Verdict.DENIED:
                message = (
                    f"{what}: HTTP {status}: Spectrum refused the Enhanced Authentication client"
                )
                raise status_error(resp, Endpoint.TOKEN, message, write=False)
            if found is not Verdict.OK:
                raise status_error(resp, Endpoint.TOKEN, f"{what}: HTTP {status}", write=False)
            try:
                payload = resp.json()
            except ValueError:
                payload = None
            if not isinstance(payload, dict):
                raise TransientError(f"{what}: HTTP {status} without a token")
            return payload

        payload = self._wire.send(
            "POST",
            TOKEN_PATH,
            what=what,
            service="connect/token",
            digest=json_digest({"grant_type": "client_credentials", "client_id": client_id}),
            write=False,
            classify=classify,
            data={
                "client_id": client_id,
                "client_secret": client_secret,
                "scope": TOKEN_SCOPE,
                "grant_type": "client_credentials",
            },
        )
        token = token_from_answer(
            payload,
            what=what,
            margin_s=TOKEN_REFRESH_MARGIN_S,
            default_lifetime_s=TOKEN_DEFAULT_LIFETIME_S,
        )
        self._redact.add(token.value)
        return token

    # --- SOAP exchange ---------------------------------------------------------------------------
    def _soap(
        self,
        svc: Service,
        values: Mapping[str, str],
        guid: str,
        *,
        write: bool,
        digest: str,
        interpret: Callable[[SoapResponse], T],
        describe: Callable[[T], tuple[str, SyncError | None]] | None = None,
    ) -> T:
        envelope = build_envelope(svc, self._authorization_id, guid, values)
        what = f"Spectrum {svc.name}"
        return self._wire.send(
            "POST",
            f"/ws/{svc.name}",
            what=what,
            service=svc.name,
            digest=digest,
            write=write,
            classify=lambda resp: interpret(_soap_answer(resp, svc, what, write)),
            describe=describe,
            headers={
                **self._auth_headers(rest=False),
                "Content-Type": "text/xml; charset=utf-8",
                "SOAPAction": '""',
            },
            content=envelope,
            auth=self._auth,
        )

    # --- SOAP Put ---------------------------------------------------------------------------------
    def put(self, request: SpectrumRequest) -> PutResult:
        """Send one record through a Put service. Never retried here (see module docstring).

        Raises ``AuthorizationError`` (A rows), ``AlreadyExists`` (duplicate key),
        ``PermanentError`` (I/M/E rows, client faults), ``AmbiguousWriteError`` (fault, 5xx,
        timeout after sending, cut-off answer) or ``TransientError`` (could not connect, 429).
        """
        svc = SERVICES[request.service]
        if svc.type != "put":
            raise ValueError(f"{svc.name} is a Get service: use SpectrumClient.get")
        values = dict(request.values)
        if "Company_Code" in svc.field_names and not values.get("Company_Code"):
            values["Company_Code"] = self._company_code
        digest = request.digest()
        what = f"Spectrum {svc.name}"

        def interpret(answer: SoapResponse) -> PutResult:
            if is_guid_timeout(answer):
                raise _GuidExpiredError(f"{what}: Time out has occurred (GUID expired)")
            result = classify_put_rows(svc.name, answer.rows)
            if answer.truncated:
                raise AmbiguousWriteError(
                    f"{what}: the answer was cut off; the write may have been applied"
                )
            return result

        def describe(result: PutResult) -> tuple[str, SyncError | None]:
            return ", ".join(f"{k}={v}" for k, v in result.generated.items()), None

        def send(guid: str) -> PutResult:
            return self._soap(
                svc,
                values,
                guid,
                write=True,
                digest=digest,
                interpret=interpret,
                describe=describe,
            )

        try:
            return send(self.batch_guid)
        except _GuidExpiredError:
            pass  # nothing landed: open a new batch GUID and send once more
        try:
            return send(self._renew_guid())
        except _GuidExpiredError as exc:
            raise AuthorizationError(
                f"{exc.message}, again with a new GUID: check the Authorization ID"
            ) from None

    # --- SOAP Get ---------------------------------------------------------------------------------
    def get(self, service: str, params: Mapping[str, str] | None = None) -> GetResult:
        """Call a Get service (fresh GUID per call; retried on transient failures).

        ``pCompany_Code`` defaults to the client's company. A truncated result (Spectrum's ``W``
        row, or a cut-off answer) comes back with ``truncated=True``.
        """
        svc = SERVICES.get(service)
        if svc is None or svc.type != "get":
            raise ValueError(f"{service!r} is not a Spectrum Get service")
        values = dict(params or {})
        if "pCompany_Code" in svc.field_names and not values.get("pCompany_Code"):
            values["pCompany_Code"] = self._company_code
        digest = SpectrumRequest(service=service, values=values).digest()

        def interpret(answer: SoapResponse) -> GetResult:
            result = classify_get_rows(svc, answer.rows)
            if answer.truncated:
                cut = ErrorRow("W", "the answer was cut off after the last complete row")
                result = replace(result, truncated=True, warnings=(*result.warnings, cut))
            return result

        def describe(result: GetResult) -> tuple[str, SyncError | None]:
            return f"{len(result.rows)} rows" + (" (truncated)" if result.truncated else ""), None

        def attempt() -> GetResult:
            return self._soap(
                svc,
                values,
                str(uuid.uuid4()),
                write=False,
                digest=digest,
                interpret=interpret,
                describe=describe,
            )

        return retrying(self._retry_wait_s)(attempt)

    def get_customers(self, status: str = "ALL") -> GetResult:
        return self.get("GetCustomers", {"pStatus": status})

    def get_jobs(self, customer_code: str | None = None, status: str = "") -> GetResult:
        return self.get("GetJob", {"pCustomer_Code": customer_code or "", "pStatus_Code": status})

    def get_phases(self, job_number: str) -> GetResult:
        return self.get("GetPhase", {"pJob_Number": job_number})

    def get_employees(self) -> GetResult:
        return self.get("GetEmployee")

    # --- REST multi-line AR invoices --------------------------------------------------------------
    def add_ar_invoices(self, invoices: Sequence[ARInvoiceRequest]) -> list[ARInvoiceResult]:
        """Import invoices/credit memos; one result per invoice, in order. Never retried here.

        A refused invoice is a result with ``ok=False`` and its error (``AlreadyExists`` for a
        duplicate number). The whole call raises ``AuthorizationError``, ``TransientError`` (429,
        could not connect) or ``AmbiguousWriteError`` (5xx, timeout, unreadable answer).
        """
        if not invoices:
            return []
        body = rest_invoice.build_request_body(invoices)
        numbers = [inv.number for inv in invoices]
        digest = json_digest([inv.digest() for inv in invoices])

        def classify(resp: httpx.Response) -> list[ARInvoiceResult]:
            return rest_invoice.interpret_response(resp, numbers)

        def describe(results: list[ARInvoiceResult]) -> tuple[str, SyncError | None]:
            refused = [r for r in results if r.error is not None]
            for r in refused:
                assert r.error is not None
                scrub(r.error, self._redact)  # these are returned, not raised
            detail = f"{len(results) - len(refused)} imported"
            if refused:
                detail += "; refused: " + "; ".join(str(r.error) for r in refused)
            return detail, refused[0].error if refused else None

        return self._wire.send(
            "POST",
            rest_invoice.PATH,
            what=f"Spectrum POST {rest_invoice.PATH}",
            service=rest_invoice.SERVICE,
            digest=digest,
            write=True,
            classify=classify,
            describe=describe,
            headers=self._auth_headers(rest=True),
            json=body,
            auth=self._auth,
        )
