"""ServiceTrade REST client: typed methods in, inbound models out, errors classified at the edge.

Authentication is OAuth2 client credentials when a client id and secret are given (the SDKs'
recommendation), else the legacy ``POST /api/auth`` session (``Cookie: PHPSESSID``); both are one
``clients.http.OAuth2ClientCredentials`` (cached, refreshed early; a 401 makes it re-authenticate
once and replay the request once; a second 401 is an ``AuthorizationError``). Statuses mean what
``clients.http.STATUS_POLICY`` says for REST resources (a 404 is ``NotFound``).

Reads (and token/session requests) are retried inside the client on transient failures (≤3
attempts); writes never are — a write that fails after it was sent raises ``AmbiguousWriteError``.
Every HTTP exchange is reported to ``on_call`` (audit, F19). Paths, page sizes, plural keys and the
approved-timecard resource the reference is unsure about live in ``assumptions.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from types import TracebackType
from typing import Any, Literal, Protocol, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from clients.errors import (
    AuthorizationError,
    ConfigError,
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
    retrying,
    server_failure,
    status_error,
    token_from_answer,
    verdict,
)
from clients.servicetrade import assumptions as a
from clients.servicetrade.models import (
    Comment,
    Company,
    Invoice,
    Job,
    JobItem,
    LibItem,
    Location,
    ServiceLine,
    Timecard,
    User,
)

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
R = TypeVar("R")

SYSTEM = "servicetrade"


class ReadCache(Protocol):
    """A cache of reads by id (``worker.readcache.ReadCache``): ``get`` may serve a remembered
    value, ``refresh`` always loads and remembers."""

    def get(self, resource: str, entity_id: int, load: Callable[[], R]) -> R: ...

    def refresh(self, resource: str, entity_id: int, load: Callable[[], R]) -> R: ...

    def prefetched(self, keys: Iterable[tuple[str, int]]) -> AbstractContextManager[None]:
        """A block in which the first ``get`` of each key uses one look-up made for all."""
        ...


def _messages(resp: httpx.Response) -> str:
    """ServiceTrade's explanation of a refusal: ``messages.error`` + ``messages.validation``."""
    try:
        payload = resp.json()
    except ValueError:
        return resp.text.strip()[:200]
    if not isinstance(payload, dict):
        return ""
    parts: list[str] = []
    messages = payload.get("messages")
    if isinstance(messages, dict):
        errors = messages.get("error")
        if isinstance(errors, list):
            parts.extend(str(e) for e in errors)
        validation = messages.get("validation")
        if isinstance(validation, dict):
            parts.extend(f"{k}: {v}" for k, v in validation.items())
    if "error" in payload:  # OAuth2 style
        parts.append(
            f"{payload.get('error')}: {payload.get('error_description') or ''}".rstrip(": ")
        )
    return "; ".join(parts)


def _query(params: Mapping[str, Any]) -> dict[str, str | int]:
    """Query parameters as ServiceTrade reads them: lists comma-joined, None dropped."""
    out: dict[str, str | int] = {}
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, list | tuple | set | frozenset):
            out[key] = ",".join(str(v) for v in value)
        elif isinstance(value, int):
            out[key] = value
        else:
            out[key] = str(value)
    return out


def _int_or_zero(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _parse(model: type[M], data: Any, what: str) -> M:
    if not isinstance(data, dict):
        raise PermanentError(f"{what}: the response holds no record")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise PermanentError(f"{what}: unexpected record shape: {problems}") from exc


class ServiceTradeClient:
    """One ServiceTrade account. Build one per worker process; close it at shutdown."""

    def __init__(
        self,
        base_url: str,
        *,
        client_id: str | None = None,
        client_secret: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 30.0,
        connect_timeout_s: float = 5.0,
        transport: httpx.BaseTransport | None = None,
        retry_wait_s: float = 1.0,
        on_call: CallHook | None = None,
    ) -> None:
        if client_id and client_secret:
            self._mode: Literal["oauth", "session"] = "oauth"
        elif username and password:
            self._mode = "session"
        else:
            raise ConfigError(
                "ServiceTradeClient needs client_id and client_secret (OAuth2) or "
                "username and password (legacy session)"
            )
        base = base_url.rstrip("/")
        if base.endswith(a.API_PREFIX):
            base = base[: -len(a.API_PREFIX)]
        self._http = httpx.Client(
            base_url=base,
            timeout=make_timeout(timeout_s, connect_timeout_s),
            transport=transport,
            headers={"Accept": "application/json", "User-Agent": "stsync"},
            follow_redirects=False,
        )
        self._client_id = client_id
        self._client_secret = client_secret
        self._username = username
        self._password = password
        self._retry_wait_s = retry_wait_s
        self._redact = Redactor([client_secret, password])
        self._wire = Exchanger(self._http, on_call, SYSTEM, self._redact)
        if self._mode == "oauth":
            self._auth = OAuth2ClientCredentials(lambda: retrying(retry_wait_s)(self._fetch_token))
        else:
            self._auth = OAuth2ClientCredentials(
                lambda: retrying(retry_wait_s)(self._login), apply=self._apply_session
            )
        #: jobs, locations and users read with ``cached=True`` may come from here (None: never)
        self.read_cache: ReadCache | None = None

    # --- lifecycle ------------------------------------------------------------------------------
    def close(self) -> None:
        """End the session (legacy auth: sessions per user are limited) and close connections."""
        try:
            session_id = self._auth.cached()
            if self._mode == "session" and session_id is not None:
                try:
                    self._exchange(
                        "DELETE",
                        a.SESSION_PATH,
                        service="auth",
                        digest=json_digest({"logout": True}),
                        write=False,
                        headers={"Cookie": f"{a.SESSION_COOKIE}={session_id}"},
                        classify=self._classify,
                    )
                except SyncError as exc:
                    # the session expires on its own; failing to end it is not worth an error
                    log.warning("ServiceTrade logout failed: %s", exc)
                self._auth.invalidate()
        finally:
            self._http.close()

    def __enter__(self) -> ServiceTradeClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- one HTTP exchange ------------------------------------------------------------------------
    def _exchange(
        self,
        method: str,
        path: str,
        *,
        service: str,
        digest: str,
        write: bool,
        classify: Callable[[httpx.Response, str, bool], R],
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        form: Mapping[str, str] | None = None,
        redact: Redactor | None = None,
        auth: httpx.Auth | None = None,
    ) -> R:
        """One request under ``/api``, classified and reported (``redact``: extra secrets)."""
        what = f"ServiceTrade {method} {a.API_PREFIX}/{path}"
        return self._wire.send(
            method,
            f"{a.API_PREFIX}/{path}",
            what=what,
            service=service,
            digest=digest,
            write=write,
            classify=lambda resp: classify(resp, what, write),
            redact=redact,
            headers=headers,
            params=_query(params or {}),
            json=json_body,
            data=form,
            auth=auth,
        )

    @staticmethod
    def _classify(resp: httpx.Response, what: str, write: bool) -> Any:
        """Unwrap ``data`` from a success; raise the right error class for anything else."""
        status = resp.status_code
        if verdict(status, Endpoint.RECORDS) is Verdict.OK:
            if status == 204 or not resp.content.strip():
                return None
            try:
                payload = resp.json()
            except ValueError:
                payload = None
            if not isinstance(payload, dict):
                raise server_failure(
                    f"{what}: HTTP {status} with a body that is not a JSON object", write=write
                )
            return payload.get("data")
        detail = _messages(resp)
        message = f"{what}: HTTP {status}" + (f": {detail}" if detail else "")
        raise status_error(resp, Endpoint.RECORDS, message, write=write)

    # --- authentication ---------------------------------------------------------------------------
    @staticmethod
    def _apply_session(request: httpx.Request, session_id: str) -> None:
        request.headers["Cookie"] = f"{a.SESSION_COOKIE}={session_id}"

    @staticmethod
    def _classify_auth(resp: httpx.Response, what: str, write: bool) -> Any:
        """Token and login answers: a refusal of the credentials is an ``AuthorizationError``."""
        status = resp.status_code
        found = verdict(status, Endpoint.TOKEN)
        if found is Verdict.OK:
            try:
                payload = resp.json()
            except ValueError:
                payload = None
            if not isinstance(payload, dict):
                raise TransientError(f"{what}: HTTP {status} with a body that is not JSON")
            return payload
        detail = _messages(resp)
        if found is Verdict.DENIED:
            message = f"{what}: ServiceTrade refused the credentials (HTTP {status})"
        else:
            message = f"{what}: HTTP {status}"
        message += f": {detail}" if detail else ""
        raise status_error(resp, Endpoint.TOKEN, message, write=write)

    def _fetch_token(self) -> Token:
        assert self._client_id is not None
        assert self._client_secret is not None
        payload = self._exchange(
            "POST",
            a.OAUTH_TOKEN_PATH,
            service="oauth2/token",
            digest=json_digest({"grant_type": "client_credentials", "client_id": self._client_id}),
            write=False,
            classify=self._classify_auth,
            form={
                "grant_type": "client_credentials",
                "client_id": self._client_id,
                "client_secret": self._client_secret,
            },
        )
        token = token_from_answer(
            payload,
            what=f"ServiceTrade POST {a.API_PREFIX}/{a.OAUTH_TOKEN_PATH}",
            margin_s=a.TOKEN_REFRESH_MARGIN_S,
            default_lifetime_s=a.TOKEN_DEFAULT_LIFETIME_S,
            use_jwt_exp=True,
        )
        self._redact.add(token.value)
        return token

    def _login(self) -> Token:
        payload = self._exchange(
            "POST",
            a.SESSION_PATH,
            service="auth",
            digest=json_digest({"login": self._username}),
            write=False,
            classify=self._classify_auth,
            json_body={"username": self._username, "password": self._password},
        )
        data = payload.get("data")
        token = data.get("authToken") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            raise AuthorizationError("ServiceTrade POST /api/auth answered without an authToken")
        self._redact.add(token)
        return Token(token)  # a session lasts until a 401 says otherwise

    # --- authenticated calls ----------------------------------------------------------------------
    def _call(
        self,
        method: str,
        path: str,
        *,
        service: str,
        write: bool,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        redact: Redactor | None = None,
    ) -> Any:
        """One authenticated request (the auth re-authenticates once on 401); reads are retried."""
        digest = json_digest({"method": method, "path": path, "params": params, "body": body})

        def attempt() -> Any:
            return self._exchange(
                method,
                path,
                service=service,
                digest=digest,
                write=write,
                classify=self._classify,
                auth=self._auth,
                params=params,
                json_body=body,
                redact=redact,
            )

        if write:
            return attempt()
        return retrying(self._retry_wait_s)(attempt)

    def _get_one(self, resource: str, model: type[M], entity_id: int) -> M:
        data = self._call("GET", f"{resource}/{int(entity_id)}", service=resource, write=False)
        return _parse(model, data, f"ServiceTrade {resource} {entity_id}")

    def _read(self, resource: str, model: type[M], entity_id: int, cached: bool) -> M:
        """A read by id through the read cache: ``cached`` may serve a remembered record (facts
        of *another* record); otherwise the read is fresh and refreshes the cache. The cache
        holds the record as ServiceTrade sent it (JSON, shareable between processes); it is
        parsed on every use, exactly as a fresh read."""
        cache = self.read_cache
        if cache is None:
            return self._get_one(resource, model, entity_id)

        def fetch() -> Any:
            return self._call("GET", f"{resource}/{int(entity_id)}", service=resource, write=False)

        if cached:
            data = cache.get(resource, int(entity_id), fetch)
        else:
            data = cache.refresh(resource, int(entity_id), fetch)
        return _parse(model, data, f"ServiceTrade {resource} {entity_id}")

    def prefetched(self, refs: Iterable[tuple[str, int | None]]) -> AbstractContextManager[None]:
        """A block in which the first ``cached=True`` read of each (resource, id) uses one
        read-cache look-up made for all of them (``ReadCache.prefetched``); ids None are left
        out. Without a read cache, nothing."""
        cache = self.read_cache
        wanted = [(resource, eid) for resource, eid in refs if eid is not None]
        if cache is None or not wanted:
            return nullcontext()
        return cache.prefetched(wanted)

    # --- reads by id ------------------------------------------------------------------------------
    def get_company(self, company_id: int) -> Company:
        return self._get_one("company", Company, company_id)

    def get_location(self, location_id: int, *, cached: bool = False) -> Location:
        return self._read("location", Location, location_id, cached)

    def get_job(self, job_id: int, *, cached: bool = False) -> Job:
        return self._read("job", Job, job_id, cached)

    def get_invoice(self, invoice_id: int) -> Invoice:
        return self._get_one("invoice", Invoice, invoice_id)

    def get_user(self, user_id: int, *, cached: bool = False) -> User:
        return self._read("user", User, user_id, cached)

    def get_timecard(self, timecard_id: int) -> Timecard:
        """One approved-time record (the assumed resource, reference §11)."""
        return self._get_one(a.TIMECARD_RESOURCE, Timecard, timecard_id)

    def get_serviceline(self, serviceline_id: int) -> ServiceLine:
        return self._get_one("serviceline", ServiceLine, serviceline_id)

    # --- lists ------------------------------------------------------------------------------------
    def iter_pages(
        self, resource: str, plural_key: str, params: Mapping[str, Any]
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages of ``GET /api/{resource}`` (``page``/``limit``/``totalPages``), raw items.

        Empty pages are not yielded. Each page is fetched (and retried) on its own, so a caller
        can checkpoint between pages.
        """
        query = dict(params)
        query.setdefault("limit", a.page_limit(resource))
        page = int(query.pop("page", 1))
        what = f"ServiceTrade GET {a.API_PREFIX}/{resource}"
        while True:
            data = self._call(
                "GET", resource, service=resource, write=False, params={**query, "page": page}
            )
            if data is None:
                return
            if not isinstance(data, dict):
                raise PermanentError(f"{what}: the list response is not an object")
            items = data.get(plural_key)
            total_pages = _int_or_zero(data.get("totalPages"))
            if items is None and total_pages == 0:
                return
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                raise PermanentError(
                    f"{what}: no '{plural_key}' list in the response (keys: {sorted(data)})"
                )
            if items:
                yield items
            if not items or page >= total_pages:
                return
            page += 1

    def _iter_models(self, resource: str, model: type[M], params: Mapping[str, Any]) -> Iterator[M]:
        for page in self.iter_pages(resource, a.PLURAL_KEYS[resource], params):
            for item in page:
                yield _parse(model, item, f"ServiceTrade {resource} {item.get('id', '?')}")

    def iter_companies(self, updated_after: int | None = None) -> Iterator[Company]:
        yield from self._iter_models("company", Company, {"updatedAfter": updated_after})

    def iter_locations(
        self, updated_after: int | None = None, company_id: int | None = None
    ) -> Iterator[Location]:
        yield from self._iter_models(
            "location", Location, {"updatedAfter": updated_after, "companyId": company_id}
        )

    def iter_jobs(self, updated_after: int | None = None, status: str = "all") -> Iterator[Job]:
        """Jobs; ``status="all"`` because ``GET /job`` defaults to ``scheduled`` only (§5.3)."""
        yield from self._iter_models("job", Job, {"updatedAfter": updated_after, "status": status})

    def iter_invoices(
        self, status: str | Sequence[str] | None = None, updated_after: int | None = None
    ) -> Iterator[Invoice]:
        yield from self._iter_models(
            "invoice",
            Invoice,
            {
                "status": status if isinstance(status, str | None) else list(status),
                "updatedAfter": updated_after,
            },
        )

    def iter_timecard_pages(
        self, approved_after: int, approved_before: int, status: str = "approved"
    ) -> Iterator[list[Timecard]]:
        """Pages of timecards approved in [after, before] (the assumed resource, §11)."""
        resource = a.TIMECARD_RESOURCE
        query = a.timecard_query(approved_after, approved_before, status)
        for page in self.iter_pages(resource, a.PLURAL_KEYS[resource], query):
            yield [
                _parse(Timecard, item, f"ServiceTrade timecard {item.get('id', '?')}")
                for item in page
            ]

    def list_servicelines(self) -> list[ServiceLine]:
        return list(self._iter_models("serviceline", ServiceLine, {}))

    def list_libitems(self) -> list[LibItem]:
        return list(self._iter_models("libitem", LibItem, {}))

    def list_comments(self, entity_type: int, entity_id: int) -> list[Comment]:
        return list(
            self._iter_models(
                "comment", Comment, {"entityType": entity_type, "entityId": entity_id}
            )
        )

    def list_job_items(self, job_id: int) -> list[JobItem]:
        return list(self._iter_models("jobitem", JobItem, {"jobId": job_id}))

    # --- external ids (§6) ------------------------------------------------------------------------
    def set_external_id(self, entity: str, entity_id: int, system: str, value: str) -> None:
        """Write ``value`` under ``system`` in the entity's ``externalIds`` (empty removes it)."""
        path = a.EXTERNAL_ID_PATH.format(
            entity=quote(entity, safe=""), entity_id=int(entity_id), system=quote(system, safe="")
        )
        self._call("POST", path, service="externalid", write=True, body={"value": value})

    def get_external_ids(self, entity: str, entity_id: int) -> dict[str, str]:
        path = a.EXTERNAL_IDS_PATH.format(entity=quote(entity, safe=""), entity_id=int(entity_id))
        data = self._call("GET", path, service="externalid", write=False)
        values = data.get(a.EXTERNAL_IDS_KEY) if isinstance(data, dict) else None
        if values is None:
            return {}
        if not isinstance(values, dict):
            raise PermanentError(
                f"ServiceTrade GET {a.API_PREFIX}/{path}: '{a.EXTERNAL_IDS_KEY}' is not a map"
            )
        return {str(k): str(v) for k, v in values.items() if v is not None}

    # --- comments, invoice status -----------------------------------------------------------------
    def add_comment(
        self,
        entity_type: int,
        entity_id: int,
        content: str,
        visibility: Sequence[str] = ("billing",),
    ) -> Comment:
        """Post a comment (not idempotent: the ledger decides whether to call this)."""
        data = self._call(
            "POST",
            "comment",
            service="comment",
            write=True,
            body={
                "entityType": entity_type,
                "entityId": entity_id,
                "content": content,
                "visibility": list(visibility),
            },
        )
        return _parse(Comment, data, f"ServiceTrade comment on {entity_type}/{entity_id}")

    def set_invoice_status(
        self, invoice_id: int, status: str, invoice_number: str | None = None
    ) -> Invoice:
        body: dict[str, Any] = {"status": status}
        if invoice_number is not None:
            body["invoiceNumber"] = invoice_number
        data = self._call(
            "PUT", f"invoice/{int(invoice_id)}", service="invoice", write=True, body=body
        )
        return _parse(Invoice, data, f"ServiceTrade invoice {invoice_id}")

    # --- job items (F9) ---------------------------------------------------------------------------
    def create_job_item(self, payload: Mapping[str, Any]) -> JobItem:
        data = self._call("POST", "jobitem", service="jobitem", write=True, body=dict(payload))
        return _parse(JobItem, data, f"ServiceTrade new job item for job {payload.get('jobId')}")

    def update_job_item(self, item_id: int, payload: Mapping[str, Any]) -> JobItem:
        data = self._call(
            "PUT", f"jobitem/{int(item_id)}", service="jobitem", write=True, body=dict(payload)
        )
        return _parse(JobItem, data, f"ServiceTrade job item {item_id}")

    def delete_job_item(self, item_id: int) -> None:
        self._call("DELETE", f"jobitem/{int(item_id)}", service="jobitem", write=True)

    # --- webhooks (§7) ----------------------------------------------------------------------------
    def register_webhook(
        self,
        hook_url: str,
        entity_events: Mapping[int, Sequence[str]],
        include_changesets: bool = True,
    ) -> dict[str, Any]:
        """Register ``hook_url`` (which carries the ingest secret: never echoed in errors)."""
        body = {
            "hookUrl": hook_url,
            "enabled": True,
            "includeChangesets": include_changesets,
            "entityEvents": [
                {"entityType": entity_type, a.WEBHOOK_ACTIONS_KEY: list(actions)}
                for entity_type, actions in entity_events.items()
            ],
        }
        redact = self._redact.extended([hook_url, hook_url.rstrip("/").rsplit("/", 1)[-1]])
        data = self._call(
            "POST", "webhook", service="webhook", write=True, body=body, redact=redact
        )
        if not isinstance(data, dict):
            raise PermanentError("ServiceTrade POST /api/webhook: the response holds no webhook")
        return data

    def list_webhooks(self) -> list[dict[str, Any]]:
        return [
            item
            for page in self.iter_pages("webhook", a.PLURAL_KEYS["webhook"], {})
            for item in page
        ]

    def delete_webhook(self, webhook_id: int) -> None:
        self._call("DELETE", f"webhook/{int(webhook_id)}", service="webhook", write=True)
