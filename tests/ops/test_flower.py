"""Flower (F16): it starts on the real broker behind basic auth (401 without, 200 with), refuses to
start without credentials unless --insecure-local; and what every task carries (what Flower shows)
is ids and connection names only, never a secret or a payload."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import beat_schedule
from cli.main import app as cli
from ingest.app import create_ingest_app
from tasks.registry import ENTITY_TASKS
from tests.conftest import DEMO_CONFIG, REPO, demo_env
from tests.ops.conftest import REDIS_URL, Published
from tests.ops.smtp import free_port
from worker.celery_app import Queue, app, configure
from worker.settings import load_settings

WEBHOOK = "whsec-SENTINEL-FLOWER-0001"
AUTH_ID = "authid-SENTINEL-FLOWER-02"
CLIENT_SECRET = "stsecret-SENTINEL-FLOWER-03"
FLOWER_PASSWORD = "flowerpw-SENTINEL-04"


def env_for(tmp_path: Path, redis_prefix: str, **extra: str) -> dict[str, str]:
    env = demo_env(
        tmp_path,
        infolink_url=f"sqlite:///{tmp_path / 'il.sqlite'}",
        database_url=f"sqlite:///{tmp_path / 'ledger.sqlite'}",
        extra={
            "BROKER_URL": REDIS_URL,
            "STSYNC_REDIS_PREFIX": redis_prefix,
            "STSYNC_CONFIG": str(DEMO_CONFIG),
            **extra,
        },
    )
    env.update(
        {
            "WEBHOOK_SECRET": WEBHOOK,
            "SPECTRUM_AUTHORIZATION_ID": AUTH_ID,
            "SERVICETRADE_CLIENT_SECRET": CLIENT_SECRET,
        }
    )
    return env


class FlowerProcess:
    def __init__(self, args: list[str], env: dict[str, str], log: Path, port: int) -> None:
        self.port = port
        self.log = log
        with open(log, "wb") as fh:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "cli.main", "flower", "--port", str(port), *args],
                cwd=REPO,
                env={**os.environ, **env},
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"flower exited:\n{log.read_text()[-3000:]}")
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthcheck", timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.3)
        raise AssertionError(f"flower did not answer:\n{log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture
def flower_env(tmp_path: Path, redis_prefix: str) -> dict[str, str]:
    return env_for(tmp_path, redis_prefix)


@pytest.mark.e2e
def test_flower_answers_only_with_basic_auth(tmp_path: Path, flower_env: dict[str, str]) -> None:
    port = free_port()
    env = {**flower_env, "FLOWER_USER": "ops", "FLOWER_PASSWORD": FLOWER_PASSWORD}
    flower = FlowerProcess([], env, tmp_path / "flower.log", port)
    try:
        base = f"http://127.0.0.1:{port}"
        anonymous = httpx.get(f"{base}/", timeout=10)
        assert anonymous.status_code == 401
        assert "basic" in anonymous.headers.get("www-authenticate", "").lower()
        assert httpx.get(f"{base}/api/workers", timeout=10).status_code == 401
        # the compose healthcheck probes this one without credentials
        assert httpx.get(f"{base}/healthcheck", timeout=10).status_code == 200
        wrong = httpx.get(f"{base}/", auth=("ops", "nope"), timeout=10)
        assert wrong.status_code == 401
        ok = httpx.get(f"{base}/", auth=("ops", FLOWER_PASSWORD), timeout=10)
        assert ok.status_code == 200 and "Flower" in ok.text
        tasks = httpx.get(f"{base}/tasks", auth=("ops", FLOWER_PASSWORD), timeout=10)
        assert tasks.status_code == 200
        # the password is in Flower's environment, never on a command line ps can show
        cmdlines = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        assert FLOWER_PASSWORD not in cmdlines
    finally:
        flower.stop()
    assert FLOWER_PASSWORD not in (tmp_path / "flower.log").read_text(errors="replace")


@pytest.mark.e2e
def test_insecure_local_flower_listens_on_loopback_without_login(
    tmp_path: Path, flower_env: dict[str, str]
) -> None:
    port = free_port()
    flower = FlowerProcess(["--insecure-local"], flower_env, tmp_path / "flower.log", port)
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=10).status_code == 200
        listening = subprocess.run(["ss", "-ltn"], capture_output=True, text=True).stdout
        assert f"127.0.0.1:{port}" in listening and f"0.0.0.0:{port}" not in listening
    finally:
        flower.stop()


def test_flower_refuses_to_start_without_credentials(
    flower_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for k, v in flower_env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("FLOWER_USER", raising=False)
    monkeypatch.delenv("FLOWER_PASSWORD", raising=False)
    res = CliRunner().invoke(cli, ["flower"])
    assert res.exit_code == 2
    assert "refusing to start Flower without credentials" in res.output


# --- what tasks carry ----------------------------------------------------------------------------
ID = re.compile(r"^\d+(:\d+)?$")


def test_every_task_carries_ids_and_connection_names_only(
    tmp_path: Path,
    redis_prefix: str,
    published: list[Published],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = env_for(tmp_path, redis_prefix)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    settings = load_settings(DEMO_CONFIG, env)
    configure(settings)
    app.loader.import_default_modules()
    secrets = [WEBHOOK, AUTH_ID, CLIENT_SECRET]

    # webhooks: one delivery naming every entity type the ingest routes
    r = redis.Redis.from_url(REDIS_URL)
    from worker.ledger import Ledger

    Ledger(settings.database_url).migrate()  # ingest stores wake-ups before it answers
    ingest = TestClient(create_ingest_app(settings, redis_client=r))
    delivery = {
        "messageId": "flower-1",
        "data": [
            {"action": "updated", "entity": {"type": t, "id": 4000 + n}}
            for n, t in enumerate(ENTITY_TASKS)
        ],
    }
    assert ingest.post(f"/webhooks/servicetrade/{WEBHOOK}", json=delivery).status_code == 202
    # every Beat entry, sent the way Beat sends it
    for entry in beat_schedule.build_schedule(settings).values():
        app.send_task(
            entry["task"],
            args=entry.get("args", ()),
            kwargs=entry.get("kwargs", {}),
            **entry.get("options", {}),
        )
    # the CLI's send-job and a PO line replay
    runner = CliRunner()
    assert runner.invoke(cli, ["send-job", "52001", "--connection", "main"]).exit_code == 0
    from tasks.ops import replay_for
    from worker.ledger import RecordKey

    task, args = replay_for(RecordKey("main", "po_line", "26001:001")) or ("", ())
    app.send_task(task, args=args)
    r.close()

    expected = (
        {t for t, _ in ENTITY_TASKS.values()}
        | {e["task"] for e in beat_schedule.build_schedule(settings).values()}
        | {"sync.job.send", "sync.po_line"}
    )
    assert {p.task for p in published} == expected
    for p in published:
        assert p.task in app.tasks, f"{p.task} is not a registered task"
        assert p.kwargs == {}
        for a in p.args:
            assert isinstance(a, int) or (
                isinstance(a, str) and (a in settings.connections or ID.match(a))
            ), f"{p.task} carries {a!r}"
        assert p.headers["argsrepr"] == repr(p.args), p.headers["argsrepr"]
        assert p.headers["kwargsrepr"] == "{}"
        for s in secrets:
            assert s not in p.raw, f"{p.task} message carries a secret"
    # and each lands on its queue (sync.* on the sync queue, schedule.* on the schedule queue)
    for name in expected:
        queue = app.tasks[name].queue  # type: ignore[attr-defined]  # a task option
        want = Queue.SCHEDULE.value if name.startswith("schedule.") else Queue.SYNC.value
        assert queue == want, f"{name} routes to {queue}"
