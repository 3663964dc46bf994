"""The record-type registry: every table that names record types is derived from it."""

from __future__ import annotations

import pytest

import tasks
from mappers.timecard import RECORD_TYPE as ENTRY_RECORD_TYPE
from tasks import registry
from tasks._pipeline import Outcome
from worker.celery_app import app


def test_every_record_type_has_its_task_registered_and_its_sync_function() -> None:
    app.loader.import_default_modules()
    for rt in registry.RECORD_TYPES:
        assert rt.task in app.tasks, rt.name
        assert app.tasks[rt.task].__module__ == rt.module, rt.name
        if rt.sync is not None:
            fn = rt.sync_function()
            assert fn.__module__ == rt.module
            assert fn.__annotations__["return"] in ("Outcome", Outcome)


def test_a_missing_task_module_fails_loudly() -> None:
    with pytest.raises(ModuleNotFoundError, match="tasks.no_such_record"):
        tasks.load_task_modules(("tasks.customer", "tasks.no_such_record"))


def test_webhook_routes_and_cli_names() -> None:
    assert registry.ENTITY_TASKS == {
        "company": ("sync.customer", "customer"),
        "location": ("sync.site", "site"),
        "job": ("sync.job", "job"),
        "invoice": ("sync.invoice", "invoice"),
        "timecard": ("sync.timecard", "timecard"),
        # watched, not synced: a fixed user wakes what failed on it (F21)
        "user": ("sync.user", "user"),
    }
    assert registry.ENTITY_BY_NAME == {
        "customer": "company",
        "company": "company",
        "site": "location",
        "location": "location",
        "job": "job",
        "invoice": "invoice",
        "timecard": "timecard",
    }
    assert list(registry.PREVIEW_NAMES) == [
        "customer",
        "company",
        "site",
        "location",
        "job",
        "work_order",
        "send-job",
        "invoice",
        "timecard",
    ]
    assert registry.record_type("company") is registry.CUSTOMER
    with pytest.raises(KeyError):
        registry.record_type("vendor")


def test_parts_and_siblings_are_record_types() -> None:
    for rt in registry.RECORD_TYPES:
        for other in (*rt.parts, *rt.siblings):
            assert other in registry.BY_NAME, (rt.name, other)
    assert registry.TIMECARD_ENTRY.name == ENTRY_RECORD_TYPE


@pytest.mark.parametrize(
    ("record_type", "source_id", "expected"),
    [
        ("customer", "12", ("sync.customer", (12, "main"))),
        ("work_order", "7", ("sync.job.send", (7, "main"))),
        ("invoice_void", "5", ("sync.invoice", (5, "main"))),
        ("ar_document", "5:credit_memo", ("sync.invoice", (5, "main"))),
        ("timecard_entry", "9:3", ("sync.timecard", (9, "main"))),
        ("po_line", "26001:001", ("sync.po_line", ("26001:001", "main"))),
        ("customer", "x1", None),
        ("vendor", "1", None),
    ],
)
def test_replay(record_type: str, source_id: str, expected: object) -> None:
    assert registry.replay_for(record_type, source_id, "main") == expected


def test_the_task_module_list_covers_every_module_with_tasks() -> None:
    app.loader.import_default_modules()
    modules = {t.__module__ for name, t in app.tasks.items() if not name.startswith("celery.")}
    assert modules == set(registry.TASK_MODULES)


def test_a_watched_entity_is_routed_but_is_no_record_type() -> None:
    from cli.demo import expected_records

    assert registry.USER.entity not in registry.BY_NAME
    assert registry.USER.module in registry.TASK_MODULES
    # the demo waits for ledger rows: a user has none
    assert expected_records({"user": 5, "job": 2, "invoice": 1}) == 3
