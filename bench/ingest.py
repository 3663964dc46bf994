"""P1: webhook ingest throughput and latency (printed, never asserted).

The real ingest app runs under uvicorn in its own process on loopback, with a private Redis as
broker (``bench.stack.PrivateRedis``): every event costs one ``SET NX`` (dedupe) and one Celery
publish, as in production. No worker consumes, so the queue only grows (bounded by the count).
``--clients`` threads with keep-alive connections post deliveries of ``--batch`` events each
(every event a new record, every delivery a new messageId) until ``--deliveries`` or
``--seconds`` run out; latency is per delivery, throughput in events per second.

    ./.venv/bin/python -m bench.ingest [--batch 1 10 100] [--clients 4] [--deliveries 1500]
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from bench.stack import REPO, SOAK_RELIABILITY, PrivateRedis, settings_toml
from sandbox.credentials import WEBHOOK_SECRET, demo_environment
from worker.serve import free_port, wait_for


@dataclass
class Run:
    batch: int
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    elapsed_s: float = 0.0
    queued: int = 0
    #: CPU seconds the ingest process(es) used during the run (user + system)
    server_cpu_s: float = 0.0

    def line(self) -> str:
        lat = sorted(self.latencies_ms)
        n = len(lat)
        if not n:
            return f"batch {self.batch:>4}: no successful deliveries ({self.errors} errors)"
        p50 = statistics.median(lat)
        p99 = lat[min(n - 1, int(n * 0.99))]
        events = n * self.batch
        return (
            f"batch {self.batch:>4} events/delivery: {n:>6} deliveries {events:>7} events in "
            f"{self.elapsed_s:5.1f}s = {events / self.elapsed_s:>7.0f} events/s "
            f"({n / self.elapsed_s:>6.0f} deliveries/s), latency p50 {p50:6.1f} ms "
            f"p99 {p99:6.1f} ms, {self.errors} errors, {self.queued} tasks in Redis; ingest "
            f"CPU {self.server_cpu_s:.1f} s = {self.server_cpu_s * 1e6 / events:.0f} us/event"
        )


def serve(port: int, workers: int = 1) -> None:
    """Child process: the ingest of the environment's configuration on 127.0.0.1:port, run as
    ``stsync ingest`` runs it (``workers`` > 1: that many uvicorn processes)."""
    from ingest.serve import serve_ingest
    from worker.celery_app import configure
    from worker.logs import configure_logging
    from worker.settings import load_settings

    settings = load_settings()
    configure(settings)
    configure_logging(settings)  # as `stsync ingest` does: a JSON line per delivery
    profile = os.environ.get("STSYNC_BENCH_PROFILE")
    if not profile:
        serve_ingest(settings, "127.0.0.1", port, workers=workers)
        return
    import cProfile
    import signal

    # uvicorn re-raises the SIGTERM it caught once it has shut down: exit through Python then,
    # so that the profile is written (the event loop's thread only; the group commits run in
    # worker threads)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    prof = cProfile.Profile()
    try:
        prof.runcall(serve_ingest, settings, "127.0.0.1", port, workers=workers)
    finally:
        prof.dump_stats(profile)


def _client_proc(
    url: str, batch: int, threads: int, deliveries: int, seconds: float, first_id: int, out: Any
) -> None:
    """One client process: ``threads`` keep-alive connections (plain ``http.client``, much
    lighter than httpx, so the clients leave the CPU to the server) posting ``deliveries``."""
    parsed = urlsplit(url)
    host = parsed.hostname or "127.0.0.1"
    lock = threading.Lock()
    budget = [deliveries]
    ids = itertools.count(first_id, batch)
    deadline = time.monotonic() + seconds
    latencies: list[float] = []
    errors = [0]

    def worker() -> None:
        local: list[float] = []
        failed = 0
        conn = http.client.HTTPConnection(host, parsed.port, timeout=30)
        while time.monotonic() < deadline:
            with lock:
                if budget[0] <= 0:
                    break
                budget[0] -= 1
                first = next(ids)
            body = json.dumps(
                {
                    "messageId": f"bench-{first}",
                    "timestamp": "1",
                    "data": [
                        {
                            "action": "created",
                            "timestamp": 1,
                            "entity": {"type": "company", "id": first + i},
                        }
                        for i in range(batch)
                    ],
                }
            )
            started = time.perf_counter()
            try:
                conn.request(
                    "POST", parsed.path, body=body, headers={"content-type": "application/json"}
                )
                resp = conn.getresponse()
                resp.read()
                ok = resp.status == 202
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection(host, parsed.port, timeout=30)
                ok = False
            if ok:
                local.append((time.perf_counter() - started) * 1000)
            else:
                failed += 1
        conn.close()
        with lock:
            latencies.extend(local)
            errors[0] += failed

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    out.put((latencies, errors[0]))


def _post_all(
    url: str, batch: int, clients: int, procs: int, deliveries: int, seconds: float, first_id: int
) -> Run:
    """``procs`` client processes x ``clients`` threads; each process gets its own id range."""
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    share = max(1, deliveries // procs)
    span = share * batch + 1
    children = [
        ctx.Process(
            target=_client_proc,
            args=(url, batch, clients, share, seconds, first_id + i * span, out),
        )
        for i in range(procs)
    ]
    run = Run(batch)
    started = time.monotonic()
    for c in children:
        c.start()
    for _ in children:
        latencies, errors = out.get()
        run.latencies_ms.extend(latencies)
        run.errors += errors
    for c in children:
        c.join()
    run.elapsed_s = time.monotonic() - started
    return run


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of the process ``pid`` and its children (uvicorn workers)."""
    import psutil

    parent = psutil.Process(pid)
    total = 0.0
    for p in [parent, *parent.children(recursive=True)]:
        try:
            t = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


def run_ingest_bench(
    batches: list[int],
    clients: int,
    deliveries: int,
    seconds: float,
    procs: int = 2,
    ingest_workers: int = 1,
) -> list[Run]:
    with tempfile.TemporaryDirectory(prefix="stsync-p1-") as d:
        tmp = Path(d)
        redis = PrivateRedis(tmp / "redis")
        redis.start()
        port = free_port()
        env = dict(os.environ)
        env.update(demo_environment("http://127.0.0.1:9", "http://127.0.0.1:9", "sqlite://"))
        env.update(
            {
                "STSYNC_CONFIG": str(settings_toml(tmp, reliability=SOAK_RELIABILITY)),
                "STSYNC_DATA_DIR": str(tmp / "data"),
                "DATABASE_URL": f"sqlite:///{tmp / 'ledger.sqlite'}",
                "BROKER_URL": redis.url,
                "STSYNC_AUTOCONFIGURE": "0",
                "PYTHONPATH": str(REPO),
            }
        )
        from worker.ledger import Ledger

        # ingest stores each delivery's wake-ups in the ledger before answering (durable ack)
        Ledger(env["DATABASE_URL"]).migrate()
        log = open(tmp / "ingest.log", "wb")  # noqa: SIM115 - closed with the run
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.ingest",
                "--serve",
                str(port),
                "--ingest-workers",
                str(ingest_workers),
            ],
            cwd=REPO,
            env=env,
            # the ingest's log (a line per delivery) goes to a file, not the terminal
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            base = f"http://127.0.0.1:{port}"

            def up() -> bool:
                try:
                    return httpx.get(f"{base}/healthz", timeout=1, trust_env=False).is_success
                except httpx.HTTPError:
                    return False

            wait_for(up, 30, 0.2, "ingest up")
            url = f"{base}/webhooks/servicetrade/{WEBHOOK_SECRET}"
            first_id = 1
            runs = []
            for batch in batches:
                before = redis.backlog()["ready"]
                cpu_before = _cpu_s(proc.pid)
                count = max(1, deliveries // batch * 10 if batch > 10 else deliveries)
                run = _post_all(url, batch, clients, procs, count, seconds, first_id)
                first_id += count * batch + procs * (batch + 1) + 1
                run.queued = redis.backlog()["ready"] - before
                run.server_cpu_s = _cpu_s(proc.pid) - cpu_before
                runs.append(run)
            return runs
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            log.close()
            redis.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.split("\n")[0])
    p.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, nargs="+", default=[1, 10, 100])
    p.add_argument("--clients", type=int, default=4, help="threads per client process")
    p.add_argument("--client-procs", type=int, default=2)
    p.add_argument(
        "--ingest-workers",
        type=int,
        default=1,
        help="uvicorn processes of the ingest (stsync ingest --workers)",
    )
    p.add_argument(
        "--deliveries",
        type=int,
        default=1500,
        help="per batch size (batches over 10 events: deliveries/batch x 10)",
    )
    p.add_argument("--seconds", type=float, default=30.0, help="cap per batch size")
    args = p.parse_args(argv)
    if args.serve is not None:
        serve(args.serve, args.ingest_workers)
        return 0
    print(f"load average before: {[round(x, 2) for x in os.getloadavg()]}")
    print(
        f"ingest: {args.ingest_workers} uvicorn process(es), {args.client_procs} client "
        f"processes x {args.clients} keep-alive connections, SQLite ledger (the inbox), "
        "JSON log at INFO to a file"
    )
    for run in run_ingest_bench(
        args.batch,
        args.clients,
        args.deliveries,
        args.seconds,
        args.client_procs,
        args.ingest_workers,
    ):
        print(run.line())
    print(f"load average after: {[round(x, 2) for x in os.getloadavg()]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
