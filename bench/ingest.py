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
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

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

    def line(self) -> str:
        lat = sorted(self.latencies_ms)
        n = len(lat)
        if not n:
            return f"batch {self.batch:>4}: no successful deliveries ({self.errors} errors)"
        p50 = statistics.median(lat)
        p99 = lat[min(n - 1, int(n * 0.99))]
        events = n * self.batch
        return (f"batch {self.batch:>4} events/delivery: {n:>6} deliveries {events:>7} events in "
                f"{self.elapsed_s:5.1f}s = {events / self.elapsed_s:>7.0f} events/s "
                f"({n / self.elapsed_s:>6.0f} deliveries/s), latency p50 {p50:6.1f} ms "
                f"p99 {p99:6.1f} ms, {self.errors} errors, {self.queued} tasks in Redis")


def serve(port: int) -> None:
    """Child process: the ingest app of the environment's configuration on 127.0.0.1:port."""
    import uvicorn

    from ingest.app import create_ingest_app
    from worker.celery_app import configure
    from worker.settings import load_settings

    settings = load_settings()
    configure(settings)
    uvicorn.run(create_ingest_app(settings), host="127.0.0.1", port=port, access_log=False,
                log_level="warning")


def _post_all(url: str, batch: int, clients: int, deliveries: int, seconds: float,
              ids: itertools.count[int]) -> Run:
    run = Run(batch)
    lock = threading.Lock()
    budget = [deliveries]
    deadline = time.monotonic() + seconds

    def worker() -> None:
        local: list[float] = []
        errors = 0
        with httpx.Client(timeout=30, trust_env=False) as client:
            while time.monotonic() < deadline:
                with lock:
                    if budget[0] <= 0:
                        break
                    budget[0] -= 1
                    first = next(ids)
                    for _ in range(batch - 1):
                        next(ids)
                body = {"messageId": f"bench-{first}", "timestamp": "1", "data": [
                    {"action": "created", "timestamp": 1,
                     "entity": {"type": "company", "id": first + i}} for i in range(batch)]}
                started = time.perf_counter()
                try:
                    r = client.post(url, json=body)
                    ok = r.status_code == 202
                except httpx.HTTPError:
                    ok = False
                if ok:
                    local.append((time.perf_counter() - started) * 1000)
                else:
                    errors += 1
        with lock:
            run.latencies_ms.extend(local)
            run.errors += errors

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    run.elapsed_s = time.monotonic() - started
    return run


def run_ingest_bench(batches: list[int], clients: int, deliveries: int,
                     seconds: float) -> list[Run]:
    with tempfile.TemporaryDirectory(prefix="stsync-p1-") as d:
        tmp = Path(d)
        redis = PrivateRedis(tmp / "redis")
        redis.start()
        port = free_port()
        env = dict(os.environ)
        env.update(demo_environment("http://127.0.0.1:9", "http://127.0.0.1:9", "sqlite://"))
        env.update({
            "STSYNC_CONFIG": str(settings_toml(tmp, reliability=SOAK_RELIABILITY)),
            "STSYNC_DATA_DIR": str(tmp / "data"),
            "DATABASE_URL": f"sqlite:///{tmp / 'ledger.sqlite'}",
            "BROKER_URL": redis.url,
            "STSYNC_AUTOCONFIGURE": "0",
            "PYTHONPATH": str(REPO),
        })
        from worker.ledger import Ledger

        # ingest stores each delivery's wake-ups in the ledger before answering (durable ack)
        Ledger(env["DATABASE_URL"]).migrate()
        proc = subprocess.Popen([sys.executable, "-m", "bench.ingest", "--serve", str(port)],
                                cwd=REPO, env=env)
        try:
            base = f"http://127.0.0.1:{port}"

            def up() -> bool:
                try:
                    return httpx.get(f"{base}/healthz", timeout=1, trust_env=False).is_success
                except httpx.HTTPError:
                    return False

            wait_for(up, 30, 0.2, "ingest up")
            url = f"{base}/webhooks/servicetrade/{WEBHOOK_SECRET}"
            ids = itertools.count(1)
            runs = []
            for batch in batches:
                before = redis.backlog()["ready"]
                run = _post_all(url, batch, clients, max(1, deliveries // batch * 10
                                                         if batch > 10 else deliveries),
                                seconds, ids)
                run.queued = redis.backlog()["ready"] - before
                runs.append(run)
            return runs
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            redis.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.split("\n")[0])
    p.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, nargs="+", default=[1, 10, 100])
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--deliveries", type=int, default=1500,
                   help="per batch size (batches over 10 events: deliveries/batch x 10)")
    p.add_argument("--seconds", type=float, default=30.0, help="cap per batch size")
    args = p.parse_args(argv)
    if args.serve is not None:
        serve(args.serve)
        return 0
    print(f"load average before: {[round(x, 2) for x in os.getloadavg()]}")
    for run in run_ingest_bench(args.batch, args.clients, args.deliveries, args.seconds):
        print(run.line())
    print(f"load average after: {[round(x, 2) for x in os.getloadavg()]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
