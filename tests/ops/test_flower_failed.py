"""Flower for an operator: a record that ends ``failed`` ends its Celery task FAILED with the
reason as the error text, not retried; the outcome of a manual enqueue comes back through the
Redis result backend (``.delay(...).get()``, ``celery -A worker.celery_app call``); Flower lists
the failure with its args and reason; ``/metrics`` needs the login; signals reach the children.

Real sandbox servers, the real Redis, a real Celery worker and a real Flower; nothing eager."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from sandbox.spectrum.admin_state import Window
from tests.conftest import REPO
from tests.e2e.conftest import Stack, _make_stack
from tests.ops.smtp import free_port
from tests.ops.test_flower import FLOWER_PASSWORD, FlowerProcess
from worker.serve import wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    yield from _make_stack(tmp_path, f"sqlite:///{tmp_path / 'ledger.sqlite'}")


def approved(stack: Stack, name: str) -> int:
    """A seeded invoice, approved (no webhook registered: only the test enqueues it)."""
    assert stack.sandbox.world is not None
    inv_id = int(stack.sandbox.world.landmarks[name])
    stack.sandbox.st_state.update("invoice", inv_id, {"status": "pending_accounting"})
    return inv_id


def test_flower_failed_record_fails_its_task_with_the_reason_and_no_retry(
    stack: Stack, tmp_path: Path
) -> None:
    from tasks._celery import RecordFailed
    from tasks.invoice import push_invoice_to_spectrum as typed_task

    # the decorator keeps the function's type for direct calls; at runtime it is a Celery task
    push_invoice_to_spectrum: Any = typed_task

    good = approved(stack, "invoice_nc")
    bad = approved(stack, "invoice_sc")
    port = free_port()
    flower = FlowerProcess(
        [],
        {**stack.env, "FLOWER_USER": "ops", "FLOWER_PASSWORD": FLOWER_PASSWORD},
        tmp_path / "flower.log",
        port,
    )
    try:
        stack.start_worker()
        ok = push_invoice_to_spectrum.delay(good, "main")
        assert ok.get(timeout=60) == "synced"
        assert ok.state == "SUCCESS"
        # the AR processing window closes for the invoice's date: Spectrum refuses it for good
        stack.sandbox.spectrum_app.state.admin.set_window(
            "AR", Window(date(2027, 1, 1), date(2027, 1, 31))
        )

        failed = push_invoice_to_spectrum.delay(bad, "main")
        with pytest.raises(RecordFailed) as info:
            failed.get(timeout=60)
        rec = stack.record("invoice", bad)
        assert rec.status.value == "failed" and rec.last_error
        assert str(info.value) == f"main/invoice/{bad}: {rec.last_error}"
        assert failed.state == "FAILURE"
        # not retried: one attempt in the ledger, no retry in the worker's log
        assert rec.attempts == 1
        # an expected failure for Celery: one line, not an error with a traceback (the worker
        # logs it just after storing the result: wait for it)
        marker = f"sync.invoice[{failed.id}] raised"
        logs = wait_for(
            lambda: marker in stack.worker_logs() and stack.worker_logs(),
            30,
            0.2,
            "the worker's failure line",
        )
        assert "Retry in" not in logs
        (line,) = [ln for ln in logs.splitlines() if marker in ln]
        assert "raised expected: RecordFailed" in line and '"level": "info"' in line, line

        # the same through the documented command line: celery -A worker.celery_app call
        call = subprocess.run(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "worker.celery_app",
                "call",
                "sync.invoice",
                "--args",
                f'[{good}, "main"]',
            ],
            cwd=REPO,
            env=stack.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        task_id = call.stdout.strip().splitlines()[-1]
        assert re.fullmatch(r"[0-9a-f-]{36}", task_id), call.stdout
        assert push_invoice_to_spectrum.AsyncResult(task_id).get(timeout=60) == "unchanged"

        # Flower counts the failed record as a failed task, with the reason and the args
        base = f"http://127.0.0.1:{port}"
        auth = ("ops", FLOWER_PASSWORD)

        def flower_task() -> Any:
            tasks = httpx.get(f"{base}/api/tasks", auth=auth, timeout=10).json()
            info = tasks.get(failed.id)
            return info if info and info.get("state") == "FAILURE" else None

        shown = wait_for(flower_task, 30, 0.3, "Flower to show the failed task")
        assert shown["name"] == "sync.invoice"
        assert str(bad) in shown["args"] and "main" in shown["args"]
        assert rec.last_error in shown["exception"] and "RecordFailed" in shown["exception"]
        good_shown = httpx.get(f"{base}/api/tasks", auth=auth, timeout=10).json()[ok.id]
        assert good_shown["state"] == "SUCCESS" and "synced" in good_shown["result"]
        page = httpx.get(f"{base}/tasks", auth=auth, timeout=10).text
        for column in ("args", "result", "exception"):
            assert f'<th data-column="{column}">' in page, column

        # /metrics: the same login as every other page
        assert httpx.get(f"{base}/metrics", timeout=10).status_code == 401
        assert httpx.get(f"{base}/metrics", auth=("ops", "nope"), timeout=10).status_code == 401
        metrics = httpx.get(f"{base}/metrics", auth=auth, timeout=10)
        assert metrics.status_code == 200 and "flower_events_total" in metrics.text
        assert httpx.get(f"{base}/healthcheck", timeout=10).status_code == 200
    finally:
        flower.stop()


def _children_of(proc: subprocess.Popen[bytes]) -> list[psutil.Process]:
    try:
        return psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


@pytest.mark.parametrize("command", ["flower", "sandbox"])
def test_flower_failed_sigterm_reaches_the_real_child(
    command: str, tmp_path: Path, redis_prefix: str
) -> None:
    from tests.ops.test_flower import env_for

    env = {**os.environ, **env_for(tmp_path, redis_prefix)}
    port = free_port()
    if command == "flower":
        args = ["flower", "--insecure-local", "--port", str(port)]
    else:
        args = [
            "sandbox",
            "up",
            "--st-port",
            str(port),
            "--spectrum-port",
            str(free_port()),
            "--data-dir",
            str(tmp_path / "sandbox"),
            "--companies",
            "1",
        ]
    log = tmp_path / "out.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", *args],
            cwd=REPO,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
    try:
        children = wait_for(lambda: _children_of(proc), 30, 0.1, f"{command}'s child")

        def answers() -> bool:
            assert proc.poll() is None, log.read_text(errors="replace")[-2000:]
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            except httpx.HTTPError:
                return False
            return True

        # the real child is up and serving before the signal
        wait_for(answers, 60, 0.2, f"{command} to answer")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) is not None
        gone, alive = psutil.wait_procs(children, timeout=10)
        assert alive == [], f"left running after SIGTERM: {alive}\n{log.read_text()[-2000:]}"
    finally:
        for child in _children_of(proc):
            child.kill()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_flower_failed_results_follow_a_reconfigured_broker(
    tmp_path: Path, redis_prefix: str
) -> None:
    """Celery builds its result backend once and caches it: configure() must drop it, or a
    process that configures twice (tests, the demo) waits for results under the old prefix."""
    from tests.ops.test_flower import env_for
    from worker.celery_app import ResultsOnDemand, app, configure
    from worker.settings import load_settings

    first = env_for(tmp_path, "first:")
    configure(load_settings(first["STSYNC_CONFIG"], first))
    first_backend: Any = app.backend
    first_prefix = first_backend.task_keyprefix  # bytes at runtime
    assert first_prefix == b"first:celery-task-meta-"
    second = env_for(tmp_path, redis_prefix)
    configure(load_settings(second["STSYNC_CONFIG"], second))
    backend = app.backend
    assert isinstance(backend, ResultsOnDemand)
    prefix: Any = backend.task_keyprefix
    assert prefix == f"{redis_prefix}celery-task-meta-".encode()
