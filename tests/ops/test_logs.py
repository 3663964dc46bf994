"""Logs (F16): JSON lines with the step fields, and no secret in any log line (sentinel secrets sent
through the ingest, the clients, the pipeline and a real Celery worker whose task fails)."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from clients.errors import PermanentError, TransientError
from clients.spectrum.client import SpectrumClient
from ingest.app import create_ingest_app
from tasks._pipeline import Run, run_record
from tasks.customer import sync_customer
from tasks.state import State
from tests.conftest import DEMO_CONFIG, REPO, asgi_transport, demo_env
from tests.ops.conftest import REDIS_URL
from worker.ledger import Ledger, RecordKey, Status
from worker.logs import configure_logging
from worker.settings import load_settings

WEBHOOK = "whsec-SENTINEL-0001-abcdefgh"
AUTH_ID = "authid-SENTINEL-0002"
CLIENT_SECRET = "stsecret-SENTINEL-0003"
BEARER = "tok-SENTINEL-0004-abcdefghij"
DB_PASSWORD = "dbpw-SENTINEL-0005"
SENTINELS = [WEBHOOK, AUTH_ID, CLIENT_SECRET, BEARER, DB_PASSWORD]


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Route every log record to one buffer for the test (the root handlers are restored)."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    buf = io.StringIO()
    root.handlers = [logging.StreamHandler(buf)]
    yield buf
    root.handlers, root.level = saved_handlers, saved_level


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def sentinel_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = demo_env(
        tmp_path,
        infolink_url=f"sqlite:///{tmp_path / 'il.sqlite'}",
        database_url=f"sqlite:///{tmp_path / 'ledger.sqlite'}",
        extra=extra,
    )
    env.update(
        {
            "WEBHOOK_SECRET": WEBHOOK,
            "SPECTRUM_AUTHORIZATION_ID": AUTH_ID,
            "SERVICETRADE_CLIENT_SECRET": CLIENT_SECRET,
        }
    )
    return env


def test_each_sync_step_is_one_json_line_with_its_fields(ctx: Any, captured: io.StringIO) -> None:
    configure_logging(ctx.settings, json_lines=True)
    assert sync_customer(ctx, 1031, "main").ok
    lines = [ln for ln in json_lines(captured.getvalue()) if ln["logger"] == "stsync.sync"]
    [line] = [ln for ln in lines if ln.get("record_type") == "customer"]
    assert line["record_id"] == "1031" and line["connection"] == "main"
    assert line["outcome"] == "synced" and line["attempt"] == 1
    assert isinstance(line["duration_ms"], float) and line["level"] == "info"


def test_sentinel_secrets_never_reach_the_logs_in_process(
    tmp_path: Path, captured: io.StringIO, spectrum_app: Any, ledger_path_url: str
) -> None:
    env = sentinel_env(tmp_path, DATABASE_URL=f"postgresql+psycopg://u:{DB_PASSWORD}@db/x")
    settings = load_settings(DEMO_CONFIG, env)
    configure_logging(settings, json_lines=True)
    log = logging.getLogger("stsync.test")

    # ingest: the secret in the path (accepted, malformed body), a wrong one, the broker down
    import redis

    down = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    client = TestClient(create_ingest_app(settings, redis_client=down, send=lambda n, a: None))
    assert client.post(f"/webhooks/servicetrade/{WEBHOOK}", content=b"{nope").status_code == 400
    assert client.post(f"/webhooks/servicetrade/{WEBHOOK}x", content=b"{}").status_code == 404
    body = {"messageId": "m1", "data": [{"action": "created", "entity": {"type": "job", "id": 1}}]}
    assert client.post(f"/webhooks/servicetrade/{WEBHOOK}", json=body).status_code == 503
    # what an access log or a proxy would write
    logging.getLogger("uvicorn.access").info(
        '127.0.0.1 "POST /webhooks/servicetrade/%s" 400', WEBHOOK
    )

    # a client error: Spectrum refuses an Authorization ID it does not know
    spectrum = SpectrumClient(
        "http://spectrum.sandbox",
        authorization_id=AUTH_ID,
        company_code="ABC",
        transport=asgi_transport(spectrum_app),
        retry_wait_s=0,
    )
    try:
        spectrum.get_customers()
    except Exception as exc:  # noqa: BLE001
        log.exception("Spectrum call failed: %s (auth %s)", exc, AUTH_ID)
    finally:
        spectrum.close()

    # pipeline failures whose upstream message echoed credentials
    ledger = Ledger(ledger_path_url)
    ledger.migrate()
    ctx = type("Ctx", (), {"settings": settings, "ledger": ledger})()
    echoes = (
        f"upstream said: Authorization: Bearer {BEARER} secret {CLIENT_SECRET} "
        f"webhook {WEBHOOK} db {env['DATABASE_URL']}"
    )

    def permanent(run: Run[State]) -> Any:
        raise PermanentError(echoes)

    def transient(run: Run[State]) -> Any:
        raise TransientError(echoes)

    def internal(run: Run[State]) -> Any:
        raise RuntimeError(echoes)

    run_record(ctx, RecordKey("main", "customer", "1"), permanent, state=State)
    with pytest.raises(TransientError):
        run_record(ctx, RecordKey("main", "customer", "2"), transient, state=State)
    with pytest.raises(RuntimeError):
        run_record(ctx, RecordKey("main", "customer", "3"), internal, state=State)
    try:
        raise TransientError(echoes)
    except TransientError:
        logging.getLogger("celery.app.trace").exception("Task sync.customer[x] raised unexpected")
    ledger.dispose()

    text = captured.getvalue()
    assert len(json_lines(text)) >= 8  # every record above is one parseable JSON line
    assert "[REDACTED]" in text
    for s in SENTINELS:
        assert s not in text, f"{s} leaked into the logs"


class _LeakyServiceTrade(BaseHTTPRequestHandler):
    """An upstream that hands out a token and then answers 503 echoing secrets back."""

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self._json(200, {"access_token": BEARER, "expires_in": 3600})

    def do_GET(self) -> None:  # noqa: N802
        leak = (
            f"overloaded; you sent {self.headers.get('authorization')}; config dump: webhook "
            f"{WEBHOOK} spectrum {AUTH_ID} client_secret={CLIENT_SECRET}"
        )
        self._json(503, {"messages": {"error": [leak]}})

    def _json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.mark.e2e
def test_a_real_worker_whose_task_fails_logs_no_secret(tmp_path: Path, redis_prefix: str) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _LeakyServiceTrade)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    toml = tmp_path / "stsync.toml"
    toml.write_text(
        DEMO_CONFIG.read_text()
        + (
            "\n[reliability]\nretry_backoff_s = 1\nretry_backoff_max_s = 1\nmax_retries = 1\n"
            "lease_s = 65\ntask_time_limit_s = 60\ntask_soft_time_limit_s = 50\n"
            "visibility_timeout_s = 70\nunacked_restore_interval_s = 1\n"
        )
    )
    ledger_url = f"sqlite:///{tmp_path / 'ledger.sqlite'}"
    env = {
        **os.environ,
        **sentinel_env(
            tmp_path,
            SERVICETRADE_BASE_URL=url,
            SPECTRUM_BASE_URL=url,
            BROKER_URL=REDIS_URL,
            STSYNC_REDIS_PREFIX=redis_prefix,
            DATABASE_URL=ledger_url,
        ),
        "STSYNC_CONFIG": str(toml),
        "STSYNC_AUTOCONFIGURE": "1",
    }
    ledger = Ledger(ledger_url)
    ledger.migrate()
    log = tmp_path / "worker.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "worker.celery_app",
                "worker",
                "--concurrency=1",
                "--queues=stsync.sync,stsync.schedule",
                "--loglevel=INFO",
                "--without-gossip",
                "--without-mingle",
                "--hostname=logs@%h",
            ],
            cwd=REPO,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        settings = load_settings(toml, env)
        from worker.celery_app import configure

        configure(settings).send_task("sync.customer", args=(1031, "main"))
        key = RecordKey("main", "customer", "1031")
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            rec = ledger.get(key)
            # retries ran out on a transient cause: waiting for the re-enqueuer, not failed
            if (
                rec is not None
                and rec.status is Status.RETRY_LATER
                and "raised unexpected" in (log.read_text(errors="replace"))
            ):
                break
            time.sleep(0.3)
        text = log.read_text(errors="replace")
        assert rec is not None and rec.status is Status.RETRY_LATER, text[-3000:]
        assert rec.error_kind == "transient" and rec.next_attempt_at is not None
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
        server.shutdown()
        server.server_close()
        ledger.dispose()
    assert "Retry in" in text and "raised unexpected" in text
    assert "[REDACTED]" in text
    lines = [ln for ln in text.splitlines() if ln.startswith("{")]
    assert any(json.loads(ln).get("outcome") == "retry" for ln in lines)
    for s in SENTINELS:
        assert s not in text, f"{s} leaked into the worker log"
