"""XML attacks on both SOAP parsers, and secrets kept out of logs, task args and errors (R3).

- ``clients.spectrum.soap.parse_response`` (lxml, no entity resolution, no network, no DTD
  loading) must neutralise XXE, parameter entities, billion laughs and quadratic blow-up: no file
  content in any value, bounded time and memory.
- The Spectrum simulator's request parser (defusedxml) must refuse such requests.
- The webhook secret is compared with ``hmac.compare_digest``; credentials never appear in log
  records, in what the ingest enqueues, or in the text of client errors, even when a server
  echoes the request back.
"""

from __future__ import annotations

import hmac
import json
import logging
import resource
import time
from pathlib import Path
from typing import Any

import fakeredis
import httpx
import pytest
from fastapi.testclient import TestClient

from clients.errors import SyncError
from clients.servicetrade.client import ServiceTradeClient
from clients.spectrum.client import SpectrumClient
from clients.spectrum.services import NS_TYPES, SERVICES
from clients.spectrum.soap import MalformedSoapError, parse_response
from ingest.app import create_ingest_app
from sandbox import credentials
from tasks.customer import sync_customer
from tasks.invoice import sync_invoice
from tests.conftest import DEMO_CONFIG, demo_env
from worker.settings import load_settings

SECRETS = [
    credentials.WEBHOOK_SECRET,
    credentials.ST_CLIENT_SECRET,
    credentials.ST_PASSWORD,
    credentials.SPECTRUM_AUTHORIZATION_ID,
]
PASSWD = Path("/etc/passwd")
SOAP = "http://schemas.xmlsoap.org/soap/envelope/"


def _envelope(value: str, *, dtd: str = "") -> bytes:
    return (
        f'<?xml version="1.0"?>{dtd}<soap:Envelope xmlns:soap="{SOAP}"><soap:Body>'
        f'<GetJobResponse xmlns="{NS_TYPES}"><returnArray><response>'
        f"<Job_Number>{value}</Job_Number><Job_Description>{value}</Job_Description>"
        "</response></returnArray></GetJobResponse></soap:Body></soap:Envelope>"
    ).encode()


def _laughs(levels: int = 10) -> str:
    defs = ['<!ENTITY lol0 "lol">'] + [
        f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, levels)
    ]
    return f"<!DOCTYPE lolz [{''.join(defs)}]>"


ATTACKS: dict[str, bytes] = {
    "xxe file": _envelope("&xxe;", dtd=f'<!DOCTYPE x [<!ENTITY xxe SYSTEM "file://{PASSWD}">]>'),
    "xxe parameter entity": _envelope(
        "x", dtd=f'<!DOCTYPE x [<!ENTITY % p SYSTEM "file://{PASSWD}"> %p;]>'
    ),
    "xxe network": _envelope("&n;", dtd='<!DOCTYPE x [<!ENTITY n SYSTEM "http://127.0.0.1:9/">]>'),
    "external dtd": _envelope("x", dtd=f'<!DOCTYPE x SYSTEM "file://{PASSWD}">'),
    "billion laughs": _envelope("&lol9;", dtd=_laughs()),
    "quadratic blow-up": _envelope(
        "&a;" * 5000, dtd='<!DOCTYPE x [<!ENTITY a "' + "A" * 50_000 + '">]>'
    ),
    "xinclude": _envelope(
        f'<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="file://{PASSWD}" '
        'parse="text"/>'
    ),
    "deep nesting": (
        f'<soap:Envelope xmlns:soap="{SOAP}"><soap:Body>'
        + "<a>" * 100_000
        + "</a>" * 100_000
        + "</soap:Body></soap:Envelope>"
    ).encode(),
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_client_soap_parser_neutralises_xml_attacks(name: str) -> None:
    passwd = PASSWD.read_text().splitlines()[0]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    try:
        answer = parse_response(ATTACKS[name], SERVICES["GetJob"])
    except MalformedSoapError:
        return  # refused: fine
    elapsed = time.perf_counter() - started
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    values = " ".join(v for row in answer.rows for v in row.values())
    assert passwd not in values and "root:" not in values
    assert "lollol" not in values and "AAAA" not in values  # entities never expanded
    assert len(values) < 1000
    assert elapsed < 5 and grown_mb < 200, (elapsed, grown_mb)


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_sandbox_soap_parser_refuses_xml_attacks(spectrum_app: Any, name: str) -> None:
    client = TestClient(spectrum_app, raise_server_exceptions=False)
    body = ATTACKS[name].replace(b"GetJobResponse", b"GetJob")
    started = time.perf_counter()
    r = client.post("/ws/GetJob", content=body, headers={"content-type": "text/xml"})
    assert time.perf_counter() - started < 5
    passwd = PASSWD.read_text().splitlines()[0]
    assert passwd not in r.text and "lollollol" not in r.text
    if name in ("xinclude", "deep nesting"):
        # no DTD: parsed, but the XInclude is not processed and no job is named by it
        assert "root:" not in r.text
    else:
        assert r.status_code >= 400 and "DTD" in r.text


# --- the webhook secret -------------------------------------------------------------------------
@pytest.fixture
def ingest(tmp_path: Path) -> tuple[TestClient, list[tuple[str, tuple[Any, ...]]]]:
    env = demo_env(tmp_path, infolink_url="sqlite://", database_url="sqlite://")
    sent: list[tuple[str, tuple[Any, ...]]] = []
    app = create_ingest_app(
        load_settings(DEMO_CONFIG, env),
        redis_client=fakeredis.FakeRedis(),
        send=lambda name, args: sent.append((name, args)),
        ledger_ping=lambda: None,
        record_wakeups=lambda entries: None,
    )
    return TestClient(app, raise_server_exceptions=False), sent


def _delivery(*ids: int) -> dict[str, Any]:
    return {
        "messageId": f"m-{ids}",
        "data": [
            {"action": "created", "entity": {"type": t, "id": i}}
            for i in ids
            for t in ("company", "invoice", "timecard")
        ],
    }


def test_webhook_secret_is_compared_in_constant_time(
    ingest: tuple[TestClient, list[Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _ = ingest
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr("ingest.app.hmac.compare_digest", spy)
    wrong = credentials.WEBHOOK_SECRET[:-1] + "X"
    assert client.post(f"/webhooks/servicetrade/{wrong}", json=_delivery(1)).status_code == 404
    assert calls and all(isinstance(a, bytes) and isinstance(b, bytes) for a, b in calls)
    assert (wrong.encode(), credentials.WEBHOOK_SECRET.encode()) in calls
    calls.clear()
    ok = client.post(f"/webhooks/servicetrade/{credentials.WEBHOOK_SECRET}", json=_delivery(1))
    assert ok.status_code == 202 and calls
    # no early exit on a length mismatch or a prefix: the comparison runs for any input
    for given in ("", "x", credentials.WEBHOOK_SECRET * 2):
        calls.clear()
        client.post(f"/webhooks/servicetrade/{given}", json=_delivery(1))
        assert calls or given == "", given  # an empty segment is a different route (404)


def test_secrets_never_in_logs_answers_or_enqueued_args(
    ingest: tuple[TestClient, list[Any]], caplog: pytest.LogCaptureFixture
) -> None:
    client, sent = ingest
    caplog.set_level(logging.DEBUG)
    secret = credentials.WEBHOOK_SECRET
    answers = [
        client.post(f"/webhooks/servicetrade/{secret}", json=_delivery(7, 8)),
        client.post(f"/webhooks/servicetrade/{secret}", content=b"{not json"),
        client.post(f"/webhooks/servicetrade/{secret}x", json=_delivery(9)),
        client.post(f"/webhooks/servicetrade/{secret}", content=b"x" * 2_000_000),
        client.get("/healthz"),
    ]
    assert [a.status_code for a in answers] == [202, 400, 404, 413, 200]
    # the test's own HTTP client (httpx, standing in for ServiceTrade) logs the URL it posts to;
    # everything the ingest side logs must be clean
    logged = "\n".join(
        f"{r.getMessage()} {r.__dict__}"
        for r in caplog.records
        if not r.name.startswith(("httpx", "httpcore"))
    )
    assert "webhook rejected" in logged and "webhook accepted" in logged
    for text in [logged, *(a.text for a in answers), json.dumps(sent)]:
        for s in SECRETS:
            assert s not in text
    # task arguments are ids and the connection name, nothing else
    assert sent and all(
        len(args) == 2 and isinstance(args[0], int) and args[1] == "main" for _, args in sent
    )


def test_secrets_never_in_logs_or_ledger_of_a_sync(
    ctx: Any, world: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    company = next(c for c in world.servicetrade["company"] if c.get("isCustomer"))
    assert sync_customer(ctx, company["id"], "main").ok
    sync_invoice(ctx, world.landmarks["invoice_salesperson_without_id"], "main")  # fails
    texts = [caplog.text]
    for rec in ctx.ledger.list_records():
        texts += [rec.last_error or "", json.dumps(rec.state)]
        texts += [f"{e.detail} {e.request_digest}" for e in ctx.ledger.history(rec.key)]
    for text in texts:
        for s in SECRETS:
            assert s not in text


def _echo(status: int) -> httpx.MockTransport:
    """A server that answers every request with the request itself (URL, headers, body)."""

    def handler(request: httpx.Request) -> httpx.Response:
        echoed = f"{request.method} {request.url}\n{dict(request.headers)}\n{request.content!r}"
        return httpx.Response(status, text=f"<html>error: {echoed}</html>")

    return httpx.MockTransport(handler)


SENTINEL = "sentinel-SECRET-8c1f0e"


@pytest.mark.parametrize("status", [400, 401, 403, 500, 503])
def test_client_errors_never_carry_credentials_even_when_the_server_echoes_them(
    status: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    records: list[Any] = []
    spectrum = SpectrumClient(
        "http://spectrum.test",
        authorization_id=SENTINEL,
        company_code="ABC",
        transport=_echo(status),
        retry_wait_s=0,
        on_call=records.append,
    )
    st = ServiceTradeClient(
        "http://st.test",
        client_id="stsync",
        client_secret=SENTINEL,
        transport=_echo(status),
        retry_wait_s=0,
        on_call=records.append,
    )
    st_session = ServiceTradeClient(
        "http://st.test",
        username="api@x",
        password=SENTINEL,
        transport=_echo(status),
        retry_wait_s=0,
        on_call=records.append,
    )
    errors: list[BaseException] = []
    for call in (
        lambda: spectrum.get_phases("T1"),
        lambda: st.get_company(5),
        lambda: st_session.get_company(5),
    ):
        with pytest.raises(SyncError) as info:
            call()
        errors.append(info.value)
    for exc in errors:
        text = f"{exc} {exc!r} {getattr(exc, 'rows', '')} {exc.args}"
        assert SENTINEL not in text, text
    assert records
    for rec in records:
        assert SENTINEL not in f"{rec.detail} {rec.request_digest}"
    assert SENTINEL not in caplog.text
    for client in (spectrum, st, st_session):
        client.close()
