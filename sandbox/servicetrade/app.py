"""The ServiceTrade simulator as a FastAPI app (reference servicetrade-api; F18).

``create_app`` wires the store (``STState``), the fault injector, auth and the webhook emitter into
plain Starlette routes. Every ``/api`` call goes through ``_Server.serve``: authenticate, ask the
injector for the call's fate, apply latency, do the work under the store's lock, serialise outside
it, and record the call in the injector's log. OAuth, legacy login and ``/_sandbox`` admin routes
are never faulted.

Admin routes: the shared ``sandbox.faults.admin_router`` (``/_sandbox/faults``,
``/script/{service}``, ``/counters``, ``/requests``, ``/reset``) plus
``GET /_sandbox/webhooks`` (counters and recent attempts), ``POST /_sandbox/webhooks/flush``,
``GET|PUT /_sandbox/auth`` (token/session TTLs), ``POST /_sandbox/auth/expire`` (expire every
access token and session now) and ``GET /_sandbox/state/{resource}[/{id}]`` (the store, no auth).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from sandbox.faults import FaultInjector, Outcome, RequestRecord, admin_router, request_path
from sandbox.servicetrade import assumptions, records
from sandbox.servicetrade.auth import AuthStore, OAuthError, Principal
from sandbox.servicetrade.resources import (
    SPECS,
    Ctx,
    external_lookup,
    external_resource,
    external_set,
    external_value,
    external_values,
    fetch,
    list_records,
    update_invoice_item,
)
from sandbox.servicetrade.state import DEFAULT_BASE_URL, STState
from sandbox.servicetrade.validation import ApiError
from sandbox.servicetrade.webhooks import Deliver, WebhookEmitter

log = logging.getLogger(__name__)

_SESSION_COOKIE = "PHPSESSID"
#: x-request-id values: 16 hex digits like secrets.token_hex(8), without its urandom syscall per
#: response (an id needs to be unique, not unpredictable)
_REQUEST_IDS = random.Random()
_UNLOGGED_SERVICES = frozenset({"oauth2", "auth"})


def _dumps(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def _json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        _dumps(body), status_code=status, media_type="application/json", headers=dict(headers or {})
    )


def _envelope(data: Any, success: str | None = None) -> dict[str, Any]:
    return {"data": data, "messages": {"success": [success]} if success else {}}


def _json_body(raw: bytes) -> dict[str, Any]:
    """A JSON object request body ({} when empty); 400 otherwise."""
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, [f"Request body is not valid JSON: {exc}"]) from exc
    if not isinstance(body, dict):
        raise ApiError(400, ["Request body must be a JSON object"])
    return body


def _form_or_json(request: Request, raw: bytes) -> dict[str, Any]:
    """OAuth bodies come as JSON (node-sdk) or form-encoded (php/py-sdk); query params count too."""
    out: dict[str, Any] = dict(request.query_params)
    content_type = request.headers.get("content-type", "")
    text = raw.decode("utf-8", errors="replace")
    if "json" in content_type or text.lstrip().startswith("{"):
        try:
            body = json.loads(text) if text.strip() else {}
        except ValueError:
            body = {}
        if isinstance(body, dict):
            out.update(body)
    else:
        out.update(dict(parse_qsl(text, keep_blank_values=True)))
    return out


Work = Callable[[Principal | None, bytes], Response]


class _Server:
    def __init__(
        self,
        state: STState,
        injector: FaultInjector,
        auth: AuthStore,
        emitter: WebhookEmitter,
    ) -> None:
        self.state = state
        self.injector = injector
        self.auth = auth
        self.emitter = emitter

    # --- the one path every /api call takes -----------------------------------------------------
    async def serve(
        self,
        request: Request,
        service: str,
        work: Work,
        *,
        fault: bool = True,
        authenticate: bool = True,
    ) -> Response:
        started = time.perf_counter()
        raw = await request.body()
        outcome: Outcome = "ok"
        try:
            principal = self.principal(request) if authenticate else None
            if authenticate and principal is None:
                raise ApiError(
                    401, [assumptions.MSG_UNAUTHORIZED], headers={"WWW-Authenticate": "Bearer"}
                )
            if fault:
                outcome = self.injector.decide(service, is_write=request.method != "GET")
            await self.injector.delay()
            if outcome == "error":
                raise ApiError(
                    503, [assumptions.MSG_UNAVAILABLE], headers=self.injector.error_headers()
                )
            if outcome == "rate_limit":
                raise ApiError(
                    429,
                    [assumptions.MSG_RATE_LIMITED],
                    headers={"Retry-After": str(self.injector.config.retry_after_s)},
                )
            try:
                response = work(principal, raw)
            except ApiError:
                if outcome == "ok":
                    raise
            if outcome == "timeout":
                # the write has landed; hold the answer so a client with a shorter timeout gives up
                await asyncio.sleep(self.injector.config.timeout_hold_s)
            if outcome in ("ghost", "timeout"):
                raise ApiError(503, [assumptions.MSG_UNAVAILABLE])
        except ApiError as exc:
            response = _json(exc.body(), exc.status, exc.headers)
        except Exception:  # noqa: BLE001 - a simulator bug must still answer and be logged
            log.exception("ServiceTrade sandbox failed on %s %s", request.method, request.url.path)
            response = _json({"messages": {"error": ["Internal server error"]}, "data": None}, 500)
        response.headers["x-request-id"] = f"{_REQUEST_IDS.getrandbits(64):016x}"
        self.injector.record(
            RequestRecord(
                at=time.time(),
                service=service,
                method=request.method,
                path=request_path(request.scope, with_query=True),
                body="<redacted>"
                if service in _UNLOGGED_SERVICES and raw
                else raw.decode("utf-8", errors="replace"),
                status=response.status_code,
                outcome=outcome,
                duration_ms=(time.perf_counter() - started) * 1000.0,
            )
        )
        return response

    def principal(self, request: Request) -> Principal | None:
        header = request.headers.get("authorization", "")
        if header[:7].lower() == "bearer ":
            found = self.auth.bearer(header[7:].strip())
            if found is not None:
                return found
        sid = request.cookies.get(_SESSION_COOKIE)
        return self.auth.session(sid) if sid else None

    def api_user(self, principal: Principal | None) -> dict[str, Any] | None:
        """The seeded user behind the API login (assumptions.API_USER_MATCH_FIELDS), if any."""
        if principal is None:
            return None
        wanted = principal.username.lower()
        with self.state.lock:
            for user in self.state.scan("user"):
                for field in assumptions.API_USER_MATCH_FIELDS:
                    if str(user.get(field) or "").lower() == wanted:
                        return user
        return None

    def ctx(self, principal: Principal | None, *, write: bool) -> Ctx:
        user = self.api_user(principal) if write else None
        return Ctx(self.state, user["id"] if user else None)

    # --- resource routes ------------------------------------------------------------------------
    async def collection(self, request: Request) -> Response:
        segment = request.path_params["segment"]
        resource = records.RESOURCE_BY_SEGMENT.get(segment)
        spec = SPECS.get(resource) if resource else None
        service = resource or segment

        def work(principal: Principal | None, raw: bytes) -> Response:
            if spec is None:
                raise ApiError(404, [assumptions.MSG_NOT_FOUND])
            if request.method == "GET" and "list" in spec.ops:
                ctx = self.ctx(principal, write=False)
                with self.state.lock:
                    data = list_records(ctx, spec, request.query_params)
                return _json(_envelope(data))
            if request.method == "POST" and spec.create is not None and "create" in spec.ops:
                body = _json_body(raw)
                ctx = self.ctx(principal, write=True)
                with self.state.lock:
                    rec = spec.create(ctx, body)
                    data = self.state.render(spec.resource, rec)
                return _json(_envelope(data, f"{spec.label} created"))
            raise ApiError(405, [assumptions.MSG_METHOD_NOT_ALLOWED])

        return await self.serve(request, service, work)

    async def item(self, request: Request) -> Response:
        segment = request.path_params["segment"]
        id_text = request.path_params["id"]
        resource = records.RESOURCE_BY_SEGMENT.get(segment)
        spec = SPECS.get(resource) if resource else None
        service = resource or segment

        def work(principal: Principal | None, raw: bytes) -> Response:
            if spec is None:
                raise ApiError(404, [assumptions.MSG_NOT_FOUND])
            method = request.method
            if method == "GET" and "get" in spec.ops:
                ctx = self.ctx(principal, write=False)
                with self.state.lock:
                    data = self.state.render(spec.resource, fetch(ctx, spec, id_text))
                return _json(_envelope(data))
            if method == "PUT" and spec.update is not None and "update" in spec.ops:
                body = _json_body(raw)
                ctx = self.ctx(principal, write=True)
                with self.state.lock:
                    rec = spec.update(ctx, fetch(ctx, spec, id_text), body)
                    data = self.state.render(spec.resource, rec)
                return _json(_envelope(data, f"{spec.label} updated"))
            if method == "DELETE" and "delete" in spec.ops:
                ctx = self.ctx(principal, write=True)
                with self.state.lock:
                    current = fetch(ctx, spec, id_text)
                    if spec.delete is not None:
                        spec.delete(ctx, current)
                    else:
                        self.state.remove(spec.resource, current["id"], user_id=ctx.user_id)
                return _json(dict(assumptions.DELETE_RESPONSE_BODY))
            raise ApiError(405, [assumptions.MSG_METHOD_NOT_ALLOWED])

        return await self.serve(request, service, work)

    async def invoice_item(self, request: Request) -> Response:
        """``PUT /invoiceitem/{id}``: one line of an invoice edited (lives inside the invoice)."""
        id_text = request.path_params["id"]

        def work(principal: Principal | None, raw: bytes) -> Response:
            if not id_text.isdigit():
                raise ApiError(404, [assumptions.MSG_NOT_FOUND])
            body = _json_body(raw)
            ctx = self.ctx(principal, write=True)
            with self.state.lock:
                item = update_invoice_item(ctx, int(id_text), body)
            return _json(_envelope(item, "Invoice item updated"))

        return await self.serve(request, "invoice", work)

    # --- external ids (§6) ----------------------------------------------------------------------
    async def externalid_values(self, request: Request) -> Response:
        def work(principal: Principal | None, raw: bytes) -> Response:
            resource = external_resource(request.path_params["etype"])
            with self.state.lock:
                data = external_values(
                    self.ctx(principal, write=False), resource, request.path_params["a"]
                )
            return _json(_envelope(data))

        return await self.serve(request, "externalid", work)

    async def externalid_one(self, request: Request) -> Response:
        def work(principal: Principal | None, raw: bytes) -> Response:
            resource = external_resource(request.path_params["etype"])
            a, b = request.path_params["a"], request.path_params["b"]
            if request.method == "GET":
                ctx = self.ctx(principal, write=False)
                with self.state.lock:
                    if assumptions.is_entity_id_segment(a):
                        data = external_value(ctx, resource, a, b)
                    else:
                        data = external_lookup(ctx, resource, a, b)
                return _json(_envelope(data))
            body = _json_body(raw)
            ctx = self.ctx(principal, write=True)
            with self.state.lock:
                data = external_set(ctx, resource, a, b, body)
            return _json(_envelope(data, "External id saved"))

        return await self.serve(request, "externalid", work)

    # --- OAuth2 (§1a) ---------------------------------------------------------------------------
    async def oauth_token(self, request: Request) -> Response:
        def work(principal: Principal | None, raw: bytes) -> Response:
            form = _form_or_json(request, raw)
            try:
                body = self.auth.grant(form)
            except OAuthError as exc:
                return _json(exc.body(), exc.status)
            return _json(body, headers={"Cache-Control": "no-store"})

        return await self.serve(request, "oauth2", work, fault=False, authenticate=False)

    async def oauth_revoke(self, request: Request) -> Response:
        def work(principal: Principal | None, raw: bytes) -> Response:
            self.auth.revoke(_form_or_json(request, raw))
            return _json({})

        return await self.serve(request, "oauth2", work, fault=False, authenticate=False)

    async def oauth_userinfo(self, request: Request) -> Response:
        def work(principal: Principal | None, raw: bytes) -> Response:
            return _json(_envelope(self._identity(principal)))

        return await self.serve(request, "oauth2", work, fault=False)

    def _identity(self, principal: Principal | None) -> dict[str, Any]:
        user = self.api_user(principal)
        out: dict[str, Any] = {"username": principal.username if principal else None}
        if user is not None:
            out.update(records.ref_of("user", user))
            out["email"] = user.get("email")
        return out

    # --- legacy session auth (§1b) --------------------------------------------------------------
    async def legacy_auth(self, request: Request) -> Response:
        def work(principal: Principal | None, raw: bytes) -> Response:
            if request.method == "POST":
                form = _form_or_json(request, raw)
                sid = self.auth.login(
                    str(form.get("username") or ""), str(form.get("password") or "")
                )
                if sid is None:
                    # node-legacy: bad credentials on POST /auth are a 403, not a 401
                    raise ApiError(403, ["Invalid username or password"])
                session = self.auth.session(sid)
                data = {"authenticated": True, "authToken": sid, "user": self._identity(session)}
                response = _json(_envelope(data, "Logged in"))
                response.set_cookie(_SESSION_COOKIE, sid, path="/", httponly=True)
                return response
            sid = request.cookies.get(_SESSION_COOKIE) or ""
            if request.method == "DELETE":
                self.auth.logout(sid)
                response = _json(_envelope(None, "Logged out"))
                response.delete_cookie(_SESSION_COOKIE, path="/")
                return response
            session = self.auth.session(sid) if sid else None
            if session is None:
                raise ApiError(401, [assumptions.MSG_UNAUTHORIZED])
            return _json(
                _envelope(
                    {"authenticated": True, "authToken": sid, "user": self._identity(session)}
                )
            )

        return await self.serve(request, "auth", work, fault=False, authenticate=False)


def create_app(
    state: STState | None = None,
    injector: FaultInjector | None = None,
    *,
    deliver: Callable[[str, bytes], int] | None = None,
    base_url: str = DEFAULT_BASE_URL,
    token_ttl_s: float = assumptions.TOKEN_TTL_S,
    session_ttl_s: float = assumptions.SESSION_TTL_S,
) -> FastAPI:
    """The ServiceTrade simulator app.

    ``app.state.st`` is the store, ``app.state.injector`` the fault injector,
    ``app.state.webhooks`` the webhook emitter and ``app.state.auth`` the token/session store.
    ``deliver(hook_url, body) -> status`` replaces real webhook POSTs (in-process tests).
    """
    st = state if state is not None else STState(base_url=base_url)
    st.set_base_url(base_url)
    inj = injector if injector is not None else FaultInjector()
    auth = AuthStore(token_ttl_s=token_ttl_s, session_ttl_s=session_ttl_s, issuer=base_url)
    hook: Deliver | None = deliver
    emitter = WebhookEmitter(st, inj, deliver=hook)
    st.add_listener(emitter.enqueue)
    server = _Server(st, inj, auth, emitter)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        st.remove_listener(emitter.enqueue)
        emitter.close()

    app = FastAPI(title="ServiceTrade sandbox", lifespan=lifespan)
    app.state.st = st
    app.state.injector = inj
    app.state.webhooks = emitter
    app.state.auth = auth

    def reset_state() -> None:
        st.reset()
        emitter.reset()

    app.include_router(admin_router(inj, reset_state=reset_state))
    _add_sandbox_routes(app, st, auth, emitter)

    routes: list[tuple[str, Callable[[Request], Awaitable[Response]], list[str]]] = [
        ("/api/oauth2/token", server.oauth_token, ["POST"]),
        ("/oauth2/token", server.oauth_token, ["POST"]),
        ("/api/oauth2/revoke", server.oauth_revoke, ["POST"]),
        ("/oauth2/revoke", server.oauth_revoke, ["POST"]),
        ("/api/oauth2/userinfo", server.oauth_userinfo, ["GET"]),
        ("/api/auth", server.legacy_auth, ["GET", "POST", "DELETE"]),
        ("/api/externalid/{etype}/{a}", server.externalid_values, ["GET"]),
        ("/api/externalid/{etype}/{a}/{b}", server.externalid_one, ["GET", "POST", "PUT"]),
        ("/api/invoiceitem/{id}", server.invoice_item, ["PUT"]),
        ("/api/{segment}", server.collection, ["GET", "POST", "PUT", "DELETE"]),
        ("/api/{segment}/{id}", server.item, ["GET", "POST", "PUT", "DELETE"]),
    ]
    for path, endpoint, methods in routes:
        app.router.add_route(path, endpoint, methods=methods, include_in_schema=False)

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, StarletteHTTPException) else 500
        message = {404: assumptions.MSG_NOT_FOUND, 405: assumptions.MSG_METHOD_NOT_ALLOWED}.get(
            status, str(getattr(exc, "detail", "Error"))
        )
        return _json({"messages": {"error": [message]}, "data": None}, status)

    app.add_exception_handler(StarletteHTTPException, http_error)
    return app


def _add_sandbox_routes(
    app: FastAPI, st: STState, auth: AuthStore, emitter: WebhookEmitter
) -> None:
    """ServiceTrade-specific admin routes next to the shared ``/_sandbox`` ones."""

    @app.get("/_sandbox/webhooks", tags=["sandbox"])
    def webhook_counters(history: int = 50) -> dict[str, Any]:
        recent = list(emitter.history)[-history:] if history > 0 else []
        return {"counters": emitter.counters(), "history": recent}

    @app.post("/_sandbox/webhooks/flush", tags=["sandbox"])
    async def webhook_flush(timeout: float = 10.0) -> dict[str, Any]:
        try:
            await run_in_threadpool(emitter.flush, timeout)
            drained = True
        except TimeoutError:
            drained = False
        return {"drained": drained, "counters": emitter.counters()}

    @app.get("/_sandbox/auth", tags=["sandbox"])
    def auth_snapshot() -> dict[str, Any]:
        return auth.snapshot()

    @app.put("/_sandbox/auth", tags=["sandbox"])
    def auth_configure(settings: dict[str, float]) -> dict[str, Any]:
        if "token_ttl_s" in settings:
            auth.token_ttl_s = float(settings["token_ttl_s"])
        if "session_ttl_s" in settings:
            auth.session_ttl_s = float(settings["session_ttl_s"])
        return auth.snapshot()

    @app.post("/_sandbox/auth/expire", tags=["sandbox"])
    def auth_expire() -> dict[str, int]:
        return {"expired": auth.expire_all()}

    @app.get("/_sandbox/state/{resource}", tags=["sandbox"])
    def state_all(resource: str) -> Response:
        if resource not in records.PLURAL_KEYS:
            return _json(
                {"messages": {"error": [f"unknown resource {resource}"]}, "data": None}, 404
            )
        return _json(st.all(resource))

    @app.get("/_sandbox/state/{resource}/{id_}", tags=["sandbox"])
    def state_one(resource: str, id_: int) -> Response:
        rec = st.get(resource, id_) if resource in records.PLURAL_KEYS else None
        if rec is None:
            return _json({"messages": {"error": [assumptions.MSG_NOT_FOUND]}, "data": None}, 404)
        return _json(rec)
