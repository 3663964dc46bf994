"""The thin-task wiring: retry policy on every sync task, "retry later" recorded in the ledger."""

from __future__ import annotations

from typing import Any

import pytest

from clients.errors import TransientError
from tasks._celery import SyncTask, apply_reliability
from tasks.registry import ENTITY_TASKS
from worker.celery_app import app
from worker.context import set_process_context
from worker.ledger import RecordKey, Status


def sync_tasks() -> dict[str, SyncTask]:
    app.loader.import_default_modules()
    return {n: t for n, t in app.tasks.items() if isinstance(t, SyncTask)}


def test_every_routed_entity_has_a_registered_sync_task() -> None:
    registered = sync_tasks()
    for task_name, _ in ENTITY_TASKS.values():
        assert task_name in registered, task_name
        task = registered[task_name]
        assert task.acks_late and task.reject_on_worker_lost and task.ignore_result
        assert TransientError in task.autoretry_for  # type: ignore[attr-defined]  # set by task options


def test_apply_reliability_sets_the_retry_policy(settings: Any) -> None:
    apply_reliability(settings.reliability)
    for task in sync_tasks().values():
        assert task.max_retries == settings.reliability.max_retries
        assert task.retry_backoff_max == settings.reliability.retry_backoff_max_s  # type: ignore[attr-defined]


@pytest.mark.parametrize(("task_name", "pending_type"), [
    ("sync.customer", "customer"),
    ("sync.job.send", "job"),  # a JC-mode send leaves the job row
    ("sync.job.send", "work_order"),
])
def test_retries_exhausted_puts_the_record_retry_later_not_failed(
    ctx: Any, task_name: str, pending_type: str
) -> None:
    key = RecordKey("main", pending_type, "77")
    ctx.ledger.claim(key, lease_s=30)
    ctx.ledger.mark(key, Status.PENDING, error_kind="transient", reason="503", transient=True)
    set_process_context(ctx)
    try:
        app.tasks[task_name].on_failure(TransientError("Spectrum 503"), "tid", (77, "main"), {}, None)  # type: ignore[arg-type]
    finally:
        set_process_context(None)
    rec = ctx.ledger.get(key)
    rel = ctx.settings.reliability
    assert rec.status is Status.RETRY_LATER and rec.retry_rounds == 1
    assert "retries ran out" in rec.last_error and "Spectrum 503" in rec.last_error
    wait = (rec.next_attempt_at - rec.updated_at).total_seconds()
    assert abs(wait - rel.retry_later_delays_s[0]) < 5
    # not final: nobody is told yet
    assert ctx.ledger.alerts(key) == []


def test_a_permanent_failure_is_not_touched_by_on_failure(ctx: Any) -> None:
    key = RecordKey("main", "customer", "78")
    ctx.ledger.claim(key, lease_s=30)
    ctx.ledger.mark(key, Status.FAILED, error_kind="PermanentError", reason="bad terms")
    set_process_context(ctx)
    try:
        app.tasks["sync.customer"].on_failure(TransientError("x"), "tid", (78, "main"), {}, None)  # type: ignore[arg-type]
    finally:
        set_process_context(None)
    assert ctx.ledger.get(key).last_error == "bad terms"
