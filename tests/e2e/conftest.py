"""End-to-end harness: real sandbox servers, the real Redis, real Celery worker subprocesses.

No eager mode. Each test gets a fresh Redis database on 127.0.0.1:6379 (flushed), fresh sandbox
servers on free loopback ports, a fresh SQLite ledger (or PostgreSQL with ``stack_pg``), an
ingest server in a thread, and worker subprocesses it can SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
import redis

from sandbox.credentials import WEBHOOK_SECRET
from tests.conftest import REPO, fast_settings_toml
from worker.serve import ThreadServer, free_port
from worker.serve import wait_for as wait_for  # re-exported: the e2e tests import it from here

REDIS_URL = os.environ.get("STSYNC_TEST_REDIS", "redis://127.0.0.1:6379/7")


@dataclass
class Stack:
    tmp: Path
    sandbox: Any
    settings: Any
    env: dict[str, str]
    ledger: Any
    ingest_url: str
    ingest: ThreadServer
    #: this stack's Redis key prefix (Celery's queues and unacked hash live under it)
    prefix: str = ""
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    # --- workers -----------------------------------------------------------------------------
    def start_worker(
        self, concurrency: int = 2, name: str | None = None
    ) -> subprocess.Popen[bytes]:
        name = name or f"w{len(self.workers) + 1}"
        log = self.tmp / f"worker-{name}.log"
        self.logs.append(log)
        fh = open(log, "ab")  # noqa: SIM115
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "worker.celery_app",
                "worker",
                f"--concurrency={concurrency}",
                "--queues=stsync.sync,stsync.schedule",
                "--loglevel=INFO",
                "--without-gossip",
                "--without-mingle",
                "--pool=prefork",
                f"--hostname={name}@%h",
            ],
            cwd=REPO,
            env=self.env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        fh.close()  # the worker has its own copy; ours would be left to the GC (a ResourceWarning)
        self.workers.append(proc)
        wait_for(
            lambda: "ready" in log.read_text(errors="replace") or proc.poll() is not None,
            60,
            0.2,
            f"worker {name} ready",
        )
        if proc.poll() is not None:
            raise AssertionError(f"worker {name} died:\n{log.read_text()[-3000:]}")
        return proc

    def pool_children(self, proc: subprocess.Popen[bytes]) -> list[psutil.Process]:
        return psutil.Process(proc.pid).children(recursive=True)

    def kill_worker(self, proc: subprocess.Popen[bytes]) -> None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def stop_workers(self) -> None:
        """End the test's workers at once (teardown only: the test has made its checks, and
        its Redis keys are deleted next). A warm shutdown took ~2.5 s per test."""
        for proc in self.workers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        for proc in self.workers:
            proc.wait(timeout=20)

    def worker_logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}"
            for p in self.logs
            if p.exists()
        )

    # --- driving ----------------------------------------------------------------------------
    def register_webhook(self) -> None:
        from worker.context import build_context

        ctx = build_context(self.settings, ledger=self.ledger)
        try:
            from tests.e2e.helpers import webhook_entity_events

            ctx.st.register_webhook(self.ingest_url, webhook_entity_events())
        finally:
            ctx.st.close()

    def flush_webhooks(self, timeout: float = 30.0) -> None:
        self.sandbox.st_state.webhooks.flush(timeout) if hasattr(
            self.sandbox.st_state, "webhooks"
        ) else self.sandbox.st_app.state.webhooks.flush(timeout)

    def broker_backlog(self) -> dict[str, int]:
        """This stack's messages in Redis: ready in the queues, and unacked (running, or held by
        a worker for a retry countdown)."""
        r = redis.Redis.from_url(REDIS_URL)
        try:
            ready = 0
            for queue in ("stsync.sync", "stsync.schedule"):
                for key in r.scan_iter(match=f"{self.prefix}{queue}*", count=1000):
                    if r.type(key) == b"list":
                        ready += int(r.llen(key))
            return {"ready": ready, "unacked": int(r.hlen(f"{self.prefix}unacked"))}
        finally:
            r.close()

    def open_rows(self) -> int:
        """Ledger rows not final (``pending``, ``in_flight`` or ``retry_later``)."""
        counts = self.ledger.counts()
        return sum(
            n for (_, st), n in counts.items() if st in ("pending", "in_flight", "retry_later")
        )

    def settle(self, timeout: float = 180.0) -> None:
        """Wait until everything started has run out: no webhook queued in the simulator, no
        message ready or unacked in Redis (duplicates, redeliveries and retry countdowns
        included) and no ledger row open, three checks in a row. A condition, not a sleep: on
        a loaded machine the work simply takes longer. The deadline only turns a hang into a
        failure; it is generous because the 2-core CI machine runs other suites beside this."""
        self.flush_webhooks(timeout)
        calm = 0

        def quiet() -> bool:
            nonlocal calm
            ok = self.broker_backlog() == {"ready": 0, "unacked": 0} and self.open_rows() == 0
            calm = calm + 1 if ok else 0
            return calm >= 3

        try:
            wait_for(quiet, timeout, 0.3, "the stack to settle (broker empty, no open row)")
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}\nbroker {self.broker_backlog()}, open rows {self.open_rows()}\n"
                f"{self.worker_logs()}"
            ) from None

    def record(self, record_type: str, source_id: Any, connection: str = "main") -> Any:
        from worker.ledger import RecordKey

        return self.ledger.get(RecordKey(connection, record_type, str(source_id)))

    def wait_status(
        self,
        record_type: str,
        source_id: Any,
        statuses: tuple[str, ...] = ("done",),
        timeout: float = 60.0,
    ) -> Any:
        def check() -> Any:
            rec = self.record(record_type, source_id)
            return rec if rec is not None and rec.status.value in statuses else None

        try:
            return wait_for(check, timeout, 0.2, f"{record_type} {source_id} in {statuses}")
        except AssertionError as exc:
            rec = self.record(record_type, source_id)
            raise AssertionError(f"{exc}\nledger: {rec}\n{self.worker_logs()}") from None


def _make_stack(
    tmp_path: Path,
    database_url: str,
    *,
    spec: Any = None,
    config_edit: Callable[[str], str] | None = None,
) -> Iterator[Stack]:
    """The stack; ``spec`` replaces the seed, ``config_edit`` rewrites the config text."""
    from ingest.app import create_ingest_app
    from sandbox.run import start_sandbox
    from sandbox.seed import SeedSpec
    from tasks._celery import apply_reliability
    from worker.celery_app import configure
    from worker.ledger import Ledger
    from worker.settings import load_settings

    # a private key prefix per stack: other test runs may share this Redis
    prefix = f"t{uuid.uuid4().hex[:10]}:"
    r = redis.Redis.from_url(REDIS_URL)
    sandbox = start_sandbox(tmp_path / "sandbox", spec=spec or SeedSpec(companies=3))
    config = fast_settings_toml(tmp_path)
    if config_edit is not None:
        config.write_text(config_edit(config.read_text()))
    env = dict(os.environ)
    env.update(sandbox.environment())
    env.update(
        {
            "STSYNC_CONFIG": str(config),
            "STSYNC_DATA_DIR": str(tmp_path / "data"),
            "DATABASE_URL": database_url,
            "BROKER_URL": REDIS_URL,
            "STSYNC_REDIS_PREFIX": prefix,
            "STSYNC_AUTOCONFIGURE": "1",
            "PYTHONPATH": str(REPO),
        }
    )
    settings = load_settings(config, env)
    ledger = Ledger(database_url)
    ledger.migrate()
    configure(settings)
    apply_reliability(settings.reliability)
    port = free_port()
    ingest = ThreadServer(create_ingest_app(settings), port)
    stack = Stack(
        tmp=tmp_path,
        sandbox=sandbox,
        settings=settings,
        env=env,
        ledger=ledger,
        ingest_url=f"http://127.0.0.1:{port}/webhooks/servicetrade/{WEBHOOK_SECRET}",
        ingest=ingest,
        prefix=prefix,
    )
    try:
        yield stack
    finally:
        stack.stop_workers()
        ingest.stop()
        sandbox.stop()
        ledger.dispose()
        keys = list(r.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            r.delete(*keys)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    yield from _make_stack(tmp_path, f"sqlite:///{tmp_path / 'ledger.sqlite'}")


@pytest.fixture
def stack_pg(tmp_path: Path, ledger_url: str) -> Iterator[Stack]:
    """The same stack on a given ledger URL (parametrised SQLite + PostgreSQL)."""
    yield from _make_stack(tmp_path, ledger_url)
