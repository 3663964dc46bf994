"""The Spectrum Data Exchange simulator (F18): SOAP ``/ws/<Service>``, WSDLs, the REST invoice
service, Enhanced Authentication, fault injection and the ``/_sandbox`` admin endpoints.

Run it: ``uvicorn --factory sandbox.spectrum.app:create_app --port 8802`` (in-memory state), or
build ``create_app(SpectrumDB("sqlite:///path.sqlite"))`` so stsync can read the Info-Link tables.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Body, FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse

from clients.spectrum.services import AR_MULTI_LINE_AUTH_NAME, ERROR_ROW_FIELDS, SERVICES
from sandbox import faults
from sandbox.faults import FaultInjector, RequestRecord, request_path
from sandbox.spectrum import assumptions as assume
from sandbox.spectrum import rest
from sandbox.spectrum.admin_state import AdminState
from sandbox.spectrum.admin_state import admin_router as spectrum_admin_router
from sandbox.spectrum.db import SpectrumDB
from sandbox.spectrum.dispatch import Outcome, serve
from sandbox.spectrum.soap import (
    SoapRequestError,
    parse_request,
    render_fault,
    render_get,
    render_put,
    truncate_after_last_response,
)
from sandbox.spectrum.wsdl import render_wsdl

XML = "text/xml; charset=utf-8"
log = logging.getLogger(__name__)


def _fault(code: str, text: str, status: int = assume.FAULT_HTTP_STATUS) -> Response:
    return Response(render_fault(code, text), status_code=status, media_type=XML)


def _server_fault() -> Response:
    return _fault(*assume.SERVER_FAULT)


def _render(result: Outcome, injector: FaultInjector) -> str:
    service = result.service
    if service.type == "put":
        return render_put(service.name, result.rows)
    records = result.records
    cfg = injector.config
    applies = injector.applies_to(service.name)
    cap = cfg.row_cap
    if applies and cap is not None and len(records) > cap:
        warning = dict.fromkeys(service.row_fields, "")
        warning.update(
            zip(
                ERROR_ROW_FIELDS,
                (assume.ROW_CAP_CODE, assume.ROW_CAP_TEXT.format(cap=cap), ""),
                strict=True,
            )
        )
        records = records[:cap] + [warning]
    text = render_get(service, records)
    if applies and cfg.truncate_envelope:
        text = truncate_after_last_response(text)
    return text


def _jsonable(value: Any) -> Any:
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def _tables_router(db: SpectrumDB) -> APIRouter:
    """Read and seed Spectrum's tables over HTTP (demo and out-of-process runners)."""
    router = APIRouter(prefix="/_sandbox/spectrum", tags=["sandbox"])

    @router.get("/tables/{table}")
    def get_table(table: str) -> list[dict[str, Any]]:
        try:
            return [{k: _jsonable(v) for k, v in row.items()} for row in db.rows(table)]
        except KeyError as exc:
            raise HTTPException(404, str(exc)) from exc

    @router.post("/load")
    def post_load(
        rows: dict[str, list[dict[str, Any]]] = Body(...),  # noqa: B008
        baseline: bool = False,
    ) -> dict[str, int]:
        try:
            db.load(rows, baseline=baseline)
        except (KeyError, ValueError) as exc:
            raise HTTPException(422, str(exc)) from exc
        return {name: len(r) for name, r in rows.items()}

    return router


def create_app(
    db: SpectrumDB | None = None,
    injector: FaultInjector | None = None,
    *,
    strict_lengths: bool = False,
    require_all_elements: bool = True,
) -> FastAPI:
    """A Spectrum simulator over ``db`` (a fresh in-memory database by default)."""
    db = db if db is not None else SpectrumDB()
    injector = injector if injector is not None else FaultInjector()
    admin = AdminState(strict_lengths=strict_lengths, require_all_elements=require_all_elements)

    app = FastAPI(title="Spectrum Data Exchange sandbox", docs_url=None, redoc_url=None)
    app.state.db = db
    app.state.injector = injector
    app.state.admin = admin

    def reset_state() -> None:
        admin.reset()
        db.restore_baseline()

    app.include_router(faults.admin_router(injector, reset_state=reset_state))
    app.include_router(spectrum_admin_router(admin))
    app.include_router(_tables_router(db))

    def record(
        service: str,
        request: Request,
        body: bytes,
        status: int,
        outcome: str,
        started: float,
        at: float,
    ) -> None:
        injector.record(
            RequestRecord(
                at=at,
                service=service,
                method=request.method,
                path=request_path(request.scope),
                body=body.decode("utf-8", "replace"),
                status=status,
                outcome=outcome,
                duration_ms=(time.perf_counter() - started) * 1000.0,
            )
        )

    async def soap(request: Request) -> Response:
        """``POST /ws/<Service>``: one SOAP call."""
        started, at = time.perf_counter(), time.time()
        service_name: str = request.path_params["service_name"]
        body = await request.body()
        service = SERVICES.get(service_name)
        if service is None:
            record(
                service_name, request, body, assume.FAULT_HTTP_STATUS, "client_fault", started, at
            )
            return _fault(*assume.UNKNOWN_SERVICE_FAULT)
        if not admin.bearer_ok(request.headers.get("authorization")):
            record(
                service.name,
                request,
                body,
                assume.BEARER_MISSING_STATUS,
                "unauthorized",
                started,
                at,
            )
            response = _fault(
                "SOAP-ENV:Client", "A valid Bearer token is required", assume.BEARER_MISSING_STATUS
            )
            response.headers["WWW-Authenticate"] = 'Bearer realm="Spectrum"'
            return response
        await injector.delay()
        outcome = injector.decide(service.name, is_write=service.type == "put")
        if outcome in assume.SERVER_FAULT_OUTCOMES:
            record(service.name, request, body, assume.FAULT_HTTP_STATUS, outcome, started, at)
            fault = _server_fault()
            fault.headers.update(injector.error_headers())
            return fault
        try:
            result = serve(service, parse_request(body), admin, db)
        except SoapRequestError as exc:
            record(
                service.name, request, body, assume.FAULT_HTTP_STATUS, "client_fault", started, at
            )
            return _fault(exc.faultcode, exc.faultstring)
        except Exception:  # a simulator bug: answer like Spectrum would, and keep the trace
            log.exception("Spectrum sandbox failed serving %s", service.name)
            record(
                service.name, request, body, assume.FAULT_HTTP_STATUS, "server_error", started, at
            )
            return _server_fault()
        if outcome in ("ghost", "timeout"):
            # the write above is committed; the caller only sees a server fault
            if outcome == "timeout":
                await asyncio.sleep(injector.config.timeout_hold_s)
            record(service.name, request, body, assume.FAULT_HTTP_STATUS, outcome, started, at)
            return _server_fault()
        text = _render(result, injector)
        record(service.name, request, body, 200, outcome, started, at)
        return Response(text, media_type=XML)

    # The two call paths are plain Starlette routes (as the ServiceTrade app's are): they take the
    # raw request and answer a Response, so FastAPI's per-request dependency solving and exit
    # stack are pure overhead on every call. Registered where their decorators were: the order
    # decides which route answers a 405.
    app.router.add_route("/ws/{service_name}", soap, methods=["POST"], include_in_schema=False)

    @app.get("/ws/{service_name}")
    def soap_wsdl(service_name: str, request: Request) -> Response:
        """Some clients fetch ``/ws/<Service>?wsdl`` (§1)."""
        return _wsdl(service_name, request)

    @app.get("/wsdls/{filename}")
    def wsdl(filename: str, request: Request) -> Response:
        if not filename.endswith(".jws"):
            raise HTTPException(404, "WSDLs are served as /wsdls/<Service>.jws")
        return _wsdl(filename.removesuffix(".jws"), request)

    def _wsdl(name: str, request: Request) -> Response:
        service = SERVICES.get(name)
        if service is None:
            raise HTTPException(404, f"no web service {name}")
        return Response(render_wsdl(service, str(request.base_url)), media_type=XML)

    async def customer_invoice(request: Request) -> Response:
        """``POST /customer/invoice``: the REST multi-line AR invoice service."""
        started, at = time.perf_counter(), time.time()
        body = await request.body()
        name = AR_MULTI_LINE_AUTH_NAME
        try:
            caller = rest.authenticate(admin, request.headers)
        except rest.RestError as exc:
            record(name, request, body, exc.status, "unauthorized", started, at)
            return JSONResponse(exc.body, exc.status, headers=exc.headers)
        await injector.delay()
        outcome = injector.decide(name, is_write=True)
        if outcome in assume.SERVER_FAULT_OUTCOMES:
            record(name, request, body, 500, outcome, started, at)
            return JSONResponse(
                dict(assume.REST_SERVER_ERROR_BODY), 500, headers=injector.error_headers()
            )
        try:
            payload = rest.parse_json(body)
            answer = rest.serve_invoices(payload, caller, admin, db)
        except rest.RestError as exc:
            kind = "client_error" if exc.status < 500 else "server_error"
            record(name, request, body, exc.status, kind, started, at)
            return JSONResponse(exc.body, exc.status, headers=exc.headers)
        except Exception:  # a simulator bug: answer like Spectrum would, and keep the trace
            log.exception("Spectrum sandbox failed serving %s", name)
            record(name, request, body, 500, "server_error", started, at)
            return JSONResponse(dict(assume.REST_SERVER_ERROR_BODY), 500)
        if outcome in ("ghost", "timeout"):
            if outcome == "timeout":
                await asyncio.sleep(injector.config.timeout_hold_s)
            record(name, request, body, 500, outcome, started, at)
            return JSONResponse(dict(assume.REST_SERVER_ERROR_BODY), 500)
        record(name, request, body, 200, outcome, started, at)
        return JSONResponse(answer)

    app.router.add_route(
        "/customer/invoice", customer_invoice, methods=["POST"], include_in_schema=False
    )

    @app.post("/connect/token")
    async def connect_token(request: Request) -> Response:
        try:
            answer = rest.token(admin, await request.body(), request.headers)
        except rest.RestError as exc:
            return JSONResponse(exc.body, exc.status, headers=exc.headers)
        return JSONResponse(answer, headers={"Cache-Control": "no-store"})

    @app.post("/secretRotation")
    async def secret_rotation(request: Request) -> Response:
        try:
            answer = rest.rotate(admin, await request.body(), request.headers)
        except rest.RestError as exc:
            return JSONResponse(exc.body, exc.status, headers=exc.headers)
        return JSONResponse(answer, headers={"Cache-Control": "no-store"})

    return app
