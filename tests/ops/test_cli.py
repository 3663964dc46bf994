"""The ``stsync`` commands people use to act on failures (F14, F17, F19), through typer's runner,
against a ledger with real history (syncs run on the in-process sandbox) and the real Redis."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.main import app
from tasks.invoice import sync_invoice
from tasks.timecard import sync_timecard
from tests.ops.conftest import Published
from worker.ledger import RecordKey, Status

runner = CliRunner()


def run(*args: str, input: str | None = None) -> Any:
    return runner.invoke(app, list(args), input=input, catch_exceptions=False)


def fail(
    ledger: Any, record_type: str, source_id: str, reason: str, status: Status = Status.FAILED
) -> RecordKey:
    key = RecordKey("main", record_type, source_id)
    ledger.ensure(key)
    ledger.mark(key, status, error_kind="test", reason=reason)
    return key


def sent(published: list[Published]) -> set[tuple[str, tuple[Any, ...]]]:
    return {(p.task, p.args) for p in published}


# --- failures, alerts --------------------------------------------------------------------------
def test_failures_lists_failed_and_unknown_records_and_unmailed_alerts(
    cli_env: Any, ctx: Any, st_state: Any, world: Any
) -> None:
    card = next(
        c for c in st_state.all("timecard") if not c["user"].get("externalIds", {}).get("spectrum")
    )
    assert sync_timecard(ctx, card["id"], "main").result == "failed"
    inv = world.landmarks["invoice_salesperson_without_id"]
    assert sync_invoice(ctx, inv, "main").result == "failed"
    fail(ctx.ledger, "timecard_entry", "1091:3", "sent without a clear answer", Status.UNKNOWN)
    res = run("failures")
    assert res.exit_code == 0, res.output
    out = res.output
    assert f"main/timecard/{card['id']}" in out and f"main/invoice/{inv}" in out
    assert "main/timecard_entry/1091:3" in out and "unknown" in out
    assert "3 record(s) need attention" in out
    assert "Alerts not mailed yet" in out and "smtp_host is not set" in out
    only = run("failures", "--type", "invoice")
    assert (
        f"main/invoice/{inv}" in only.output
        and "timecard" not in only.output.split("need attention")[0]
    )
    listed = run("alerts", "list", "--unsent")
    assert "prerequisite" in listed.output and "2 alert(s)" in listed.output


# --- retry -------------------------------------------------------------------------------------
def test_retry_all_failed_replays_every_ledger_record_type(
    cli_env: Any, cli_ctx: Any, ledger: Any, published: list[Published]
) -> None:
    for rtype, sid in [
        ("customer", "1031"),
        ("site", "1032"),
        ("job", "1033"),
        ("work_order", "1033"),
        ("invoice", "1036"),
        ("ar_document", "1036:invoice"),
        ("invoice_void", "1045"),
        ("timecard", "1091"),
        ("timecard_entry", "1091:5"),
        ("timecard_entry", "1094:1"),
        ("po_line", "26001:001"),
    ]:
        fail(ledger, rtype, sid, f"{rtype} broke")
    fail(ledger, "customer", "1057", "not this one", Status.DONE)
    res = run("retry", "--all-failed")
    assert res.exit_code == 0, res.output
    assert sent(published) == {
        ("sync.customer", (1031, "main")),
        ("sync.site", (1032, "main")),
        ("sync.job", (1033, "main")),
        ("sync.job.send", (1033, "main")),
        ("sync.invoice", (1036, "main")),
        ("sync.invoice", (1045, "main")),
        ("sync.timecard", (1091, "main")),
        ("sync.timecard", (1094, "main")),
        ("sync.po_line", ("26001:001", "main")),
    }
    assert len(published) == 9  # one task per record to replay, duplicates folded
    assert not ledger.list_records(statuses=(Status.FAILED,))
    assert ledger.get(RecordKey("main", "po_line", "26001:001")).status is Status.PENDING
    for p in published:
        assert p.headers["argsrepr"] == repr(p.args) and p.kwargs == {}


def test_retry_one_record_by_its_cli_name(
    cli_env: Any, ledger: Any, published: list[Published]
) -> None:
    fail(ledger, "customer", "1031", "bad address")
    res = run("retry", "company", "1031")
    assert res.exit_code == 0, res.output
    assert sent(published) == {("sync.customer", (1031, "main"))}
    assert ledger.get(RecordKey("main", "customer", "1031")).status is Status.PENDING
    assert run("retry", "customer", "999").exit_code == 1  # no such record
    assert run("retry").exit_code == 2


def test_retry_type_filter(cli_env: Any, ledger: Any, published: list[Published]) -> None:
    fail(ledger, "customer", "1031", "x")
    fail(ledger, "po_line", "26003:001", "y")
    assert run("retry", "--all-failed", "--type", "po_line").exit_code == 0
    assert sent(published) == {("sync.po_line", ("26003:001", "main"))}
    assert ledger.get(RecordKey("main", "customer", "1031")).status is Status.FAILED


def test_unknown_records_replay_only_with_unknown_after_a_warning(
    cli_env: Any, ledger: Any, published: list[Published]
) -> None:
    fail(ledger, "timecard_entry", "1091:7", "PreTimeCard sent, outcome unknown", Status.UNKNOWN)
    refused = run("retry", "timecard_entry", "1091:7")
    assert refused.exit_code == 1
    assert "posts it twice" in refused.output and "--unknown" in refused.output
    assert published == [] and not run("retry", "--all-failed").output.count("enqueued sync")
    declined = run("retry", "--unknown", input="n\n")
    assert declined.exit_code == 1 and published == []
    assert ledger.get(RecordKey("main", "timecard_entry", "1091:7")).status is Status.UNKNOWN
    ok = run("retry", "--unknown", "--yes")
    assert ok.exit_code == 0, ok.output
    assert "posts it twice" in ok.output
    assert sent(published) == {("sync.timecard", (1091, "main"))}
    assert ledger.get(RecordKey("main", "timecard_entry", "1091:7")).status is Status.PENDING


# --- history -----------------------------------------------------------------------------------
def test_history_of_an_invoice_shows_its_documents_and_calls(
    cli_env: Any, ctx: Any, world: Any
) -> None:
    inv = world.landmarks["mixed_sign_invoice"]
    assert sync_invoice(ctx, inv, "main").ok
    res = run("history", "invoice", str(inv), "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["record"] == f"main/invoice/{inv}" and data["status"] == "done"
    children = {c["record_type"] + "/" + c["source_id"]: c for c in data["children"]}
    assert set(children) == {f"ar_document/{inv}:invoice", f"ar_document/{inv}:credit_memo"}
    assert {c["status"] for c in children.values()} == {"done"}
    services = [e["service"] for e in data["events"]]
    assert "ARMultiLineInvoice" in services or any("invoice" in s.lower() for s in services)
    text = run("history", "invoice", str(inv))
    assert f"main/ar_document/{inv}:credit_memo" in text.output


def test_history_of_a_timecard_shows_its_entries_and_alerts(
    cli_env: Any, ctx: Any, st_state: Any
) -> None:
    card = next(
        c for c in st_state.all("timecard") if c["user"].get("externalIds", {}).get("spectrum")
    )
    assert sync_timecard(ctx, card["id"], "main").ok
    data = json.loads(run("history", "timecard", str(card["id"]), "--json").output)
    entries = sorted(c["source_id"] for c in data["children"])
    assert entries == sorted(f"{card['id']}:{e['id']}" for e in card["entries"])
    assert all(any(ev["service"] == "PreTimeCard" for ev in c["events"]) for c in data["children"])
    bad = next(
        c for c in st_state.all("timecard") if not c["user"].get("externalIds", {}).get("spectrum")
    )
    sync_timecard(ctx, bad["id"], "main")
    shown = run("history", "timecard", str(bad["id"]))
    assert "alert (prerequisite, not mailed yet)" in shown.output
    assert run("history", "timecard", "424242").exit_code == 1


# --- preview -----------------------------------------------------------------------------------
def test_preview_prints_calls_and_exits_by_outcome(
    cli_env: Any,
    ctx: Any,
    st_state: Any,
    monkeypatch: pytest.MonkeyPatch,
    st_app: Any,
    spectrum_app: Any,
    settings: Any,
) -> None:
    from cli.preview import preview_context
    from tests.conftest import asgi_transport

    def pctx(_settings: Any) -> Any:
        return preview_context(
            settings,
            st_transport=asgi_transport(st_app),
            spectrum_transport=asgi_transport(spectrum_app),
            retry_wait_s=0,
        )

    monkeypatch.setattr("cli.main._preview_context", pctx)
    res = run("preview", "site", "1032", "--json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["status"] == "would_send"
    assert [c["service"] for c in data["calls"] if c["system"] == "spectrum"] == [
        "AddCustomer",
        "AddWOSiteAddress",
    ]
    text = run("preview", "site", "1032")
    assert "1. Spectrum AddCustomer" in text.output and "Customer_Code" in text.output
    card = next(
        c for c in st_state.all("timecard") if not c["user"].get("externalIds", {}).get("spectrum")
    )
    blocked = run("preview", "timecard", str(card["id"]))
    assert blocked.exit_code == 1 and "blocked" in blocked.output
    assert run("preview", "po", "1").exit_code == 2
    assert ctx.ledger.list_records() == []  # nothing written


# --- PO poll, catch-up, status ------------------------------------------------------------------
def test_poll_pos_now_and_enqueued(cli_env: Any, cli_ctx: Any, published: list[Published]) -> None:
    res = run("poll-pos", "--now")
    assert res.exit_code == 0, res.output
    assert "changed line(s) read" in res.output
    assert cli_ctx.ledger.list_records(record_type="po_line")
    queued = run("poll-pos")
    assert queued.exit_code == 0
    assert sent(published) == {("schedule.po_poll", ("main",))}


def test_catch_up_now_posts_the_week(cli_env: Any, cli_ctx: Any, st_state: Any) -> None:
    res = run("catch-up", "--since", "2026-11-16", "--until", "2026-11-22")
    assert "timecard(s)" in res.output and "posted" in res.output
    assert cli_ctx.ledger.list_records(record_type="timecard_entry", statuses=(Status.DONE,))
    again = run("catch-up", "--since", "2026-11-16", "--until", "2026-11-22")
    assert " 0 posted" in again.output
    assert run("catch-up", "--since", "16.11.2026").exit_code == 2


def test_status_counts(cli_env: Any, ctx: Any) -> None:
    fail(ctx.ledger, "customer", "1", "x")
    fail(ctx.ledger, "customer", "2", "x")
    out = run("status").output
    assert "customer" in out and "failed" in out and "2" in out


def test_config_check_remote_against_the_sandbox_infolink(
    cli_env: Any, settings: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    ok = run("config", "check", "--remote")
    assert ok.exit_code == 0, ok.output
    assert "every configured code exists in Spectrum" in ok.output
    from pathlib import Path

    bad = tmp_path / "bad.toml"
    bad.write_text(
        Path(settings.config_path).read_text().replace('terms_code = "N"', 'terms_code = "Z"')
    )
    res = run("config", "check", "--remote", "--config", str(bad))
    assert res.exit_code == 1
    assert "customers.terms_code" in res.output and "Z" in res.output
