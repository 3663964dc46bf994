"""``stsync doctor`` and ``stsync webhook``: each check broken in turn (issue 14).

The commands run through typer's runner against the in-process sandbox (ServiceTrade and Spectrum
over ASGI transports, Info-Link the sandbox's SQLite database).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine
from typer.testing import CliRunner

from cli import doctor, webhook
from cli.main import app
from cli.webhook import wanted_events
from clients.servicetrade.assumptions import webhook_entity_types
from clients.spectrum import infolink_schema as schema
from sandbox import credentials
from tasks.registry import ENTITY_TASKS
from tests.conftest import asgi_transport

runner = CliRunner()
PUBLIC = "https://sync.example.com"


def run(*args: str) -> Any:
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture
def sandbox_net(
    cli_env: dict[str, str], st_app: Any, spectrum_app: Any, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The CLI's clients talk to the in-process sandbox."""
    monkeypatch.setattr(
        webhook,
        "transports",
        lambda: webhook.Transports(asgi_transport(st_app), asgi_transport(spectrum_app), 0),
    )
    return cli_env


def lines(output: str) -> dict[str, str]:
    """``{check: 'ok'|'FAIL'}`` from the doctor's report."""
    out = {}
    for line in output.splitlines():
        status, _, rest = line.partition(" ")
        if status in ("ok", "FAIL"):
            out[rest.strip().split(":", 1)[0]] = status
    return out


def spectrum_rows(spectrum_db: Any) -> dict[str, int]:
    return {t.name: len(spectrum_db.rows(t.name)) for t in schema.metadata.sorted_tables}


def test_doctor_all_pass_after_webhook_register(
    sandbox_net: Any, st_state: Any, spectrum_db: Any
) -> None:
    before = spectrum_rows(spectrum_db)
    first = run("doctor", "--url", PUBLIC)
    assert first.exit_code == 1, first.output
    assert lines(first.output)["webhook"] == "FAIL"
    assert "stsync webhook register" in first.output
    reg = run("webhook", "register", "--url", PUBLIC)
    assert reg.exit_code == 0, reg.output
    assert "registered: webhook" in reg.output and credentials.WEBHOOK_SECRET not in reg.output
    res = run("doctor", "--url", PUBLIC)
    assert res.exit_code == 0, res.output
    got = lines(res.output)
    assert set(got.values()) == {"ok"}
    # one line per Spectrum web service stsync uses, the Info-Link tables, ServiceTrade, webhook
    for service in (
        "AddCustomer",
        "AddWOSiteAddress",
        "AddJob",
        "UpdateJob",
        "PreTimeCard",
        "ARMultiLineInvoice",
    ):
        assert f"spectrum main {service}" in got
    assert "servicetrade" in got and "infolink main" in got and "webhook" in got
    assert "all checks passed" in res.output
    assert credentials.WEBHOOK_SECRET not in res.output
    # the probes wrote nothing to Spectrum and nothing to ServiceTrade but the one webhook
    assert spectrum_rows(spectrum_db) == before
    assert sum(before.values()) > 0
    assert len(st_state.all("webhook")) == 1


def test_doctor_servicetrade_credentials_refused(
    sandbox_net: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SERVICETRADE_CLIENT_SECRET", "not-the-secret-0000")
    res = run("doctor", "--url", PUBLIC)
    assert res.exit_code == 1
    got = lines(res.output)
    assert got["servicetrade"] == "FAIL" and "credentials refused" in res.output
    assert got["spectrum main AddCustomer"] == "ok"  # the other checks still run
    assert "not-the-secret-0000" not in res.output


@pytest.mark.parametrize("service", ["PreTimeCard", "AddJob", "ARMultiLineInvoice", "GetPhase"])
def test_doctor_reports_each_spectrum_service_not_authorized(
    sandbox_net: Any, spectrum_app: Any, settings: Any, service: str
) -> None:
    if service not in doctor.services_used(settings.connection().rules):
        pytest.fail(f"{service} is not probed for the demo connection")
    spectrum_app.state.admin.authorize(credentials.SPECTRUM_AUTHORIZATION_ID, service, False)
    run("webhook", "register", "--url", PUBLIC)
    res = run("doctor", "--url", PUBLIC)
    assert res.exit_code == 1, res.output
    failed = [k for k, v in lines(res.output).items() if v == "FAIL"]
    assert failed == [f"spectrum main {service}"], res.output
    assert "not authorized" in res.output


def test_doctor_reports_a_missing_infolink_column(sandbox_net: Any, spectrum_db: Any) -> None:
    engine = create_engine(spectrum_db.url)
    with engine.begin() as conn:
        conn.exec_driver_sql('ALTER TABLE "JC_JOB_MASTER_MC" DROP COLUMN "WO_Site"')
    engine.dispose()
    run("webhook", "register", "--url", PUBLIC)
    res = run("doctor", "--url", PUBLIC)
    assert res.exit_code == 1
    failed = [k for k, v in lines(res.output).items() if v == "FAIL"]
    assert failed == ["infolink main JC_JOB_MASTER_MC"], res.output
    assert "no such column" in res.output and "WO_Site" in res.output


def test_doctor_missing_driver_is_one_line(
    sandbox_net: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyodbc", None)
    monkeypatch.setenv("SPECTRUM_INFOLINK_URL", "mssql+pyodbc://ro:pw@sql/Spectrum?driver=X")
    res = run("doctor", "--url", PUBLIC)
    assert res.exit_code == 1
    bad = [line for line in res.output.splitlines() if line.startswith("FAIL infolink")]
    assert len(bad) == 1 and "stsync[mssql]" in bad[0], res.output
    assert "Traceback" not in res.output


def test_config_check_remote_missing_driver_is_one_line(
    sandbox_net: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pyodbc", None)
    monkeypatch.setenv("SPECTRUM_INFOLINK_URL", "mssql+pyodbc://ro:pw@sql/Spectrum?driver=X")
    res = run("config", "check", "--remote")
    assert res.exit_code == 1
    assert "pyodbc driver, which is not installed" in res.output and "stsync[mssql]" in res.output
    assert "Traceback" not in res.output


@pytest.mark.parametrize("breakage", ["disabled", "actions", "entity", "none"])
def test_doctor_webhook_registration_checked(
    sandbox_net: Any, st_state: Any, breakage: str
) -> None:
    assert run("webhook", "register", "--url", PUBLIC).exit_code == 0
    hook = st_state.all("webhook")[0]
    events = [{"entityType": n, "actions": a} for n, a in wanted_events().items()]
    if breakage == "disabled":
        st_state.patch("webhook", hook["id"], {"enabled": False})
    elif breakage == "actions":
        events[0] = {"entityType": events[0]["entityType"], "actions": ["created"]}
        st_state.patch("webhook", hook["id"], {"entityEvents": events})
    elif breakage == "entity":
        st_state.patch("webhook", hook["id"], {"entityEvents": events[1:]})
    else:
        assert run("webhook", "remove", "--url", PUBLIC).exit_code == 0
    res = run("doctor", "--url", PUBLIC)
    assert res.exit_code == 1
    failed = [k for k, v in lines(res.output).items() if v == "FAIL"]
    assert failed == ["webhook"], res.output


def test_doctor_needs_the_public_url(sandbox_net: Any) -> None:
    res = run("doctor")
    assert res.exit_code == 1
    assert "public URL is not set" in res.output


# --- stsync webhook register | show | remove -----------------------------------------------------
def test_webhook_register_exact_entities_and_actions_once(sandbox_net: Any, st_state: Any) -> None:
    assert run("webhook", "register", "--url", PUBLIC + "/").exit_code == 0
    hooks = st_state.all("webhook")
    assert len(hooks) == 1
    hook = hooks[0]
    assert hook["hookUrl"] == f"{PUBLIC}/webhooks/servicetrade/{credentials.WEBHOOK_SECRET}"
    assert hook["enabled"] is True
    got = {int(e["entityType"]): sorted(e["actions"]) for e in hook["entityEvents"]}
    assert got == {n: ["created", "updated"] for n in webhook_entity_types().values()}
    assert set(webhook_entity_types()) == {
        "company",
        "location",
        "job",
        "invoice",
        "timecard",
        "user",
    }
    # exactly the entities webhooks are routed from (tasks/registry.py), no more, no less
    assert set(webhook_entity_types()) == set(ENTITY_TASKS)
    again = run("webhook", "register", "--url", PUBLIC)
    assert "already registered" in again.output
    assert len(st_state.all("webhook")) == 1


def test_webhook_register_replaces_a_wrong_registration(sandbox_net: Any, st_state: Any) -> None:
    run("webhook", "register", "--url", PUBLIC)
    old = st_state.all("webhook")[0]
    st_state.patch("webhook", old["id"], {"enabled": False})
    res = run("webhook", "register", "--url", PUBLIC)
    assert "re-registered" in res.output, res.output
    hooks = st_state.all("webhook")
    assert [h["id"] for h in hooks] != [old["id"]] and len(hooks) == 1
    assert hooks[0]["enabled"] is True


def test_webhook_register_show_and_remove(sandbox_net: Any, st_state: Any) -> None:
    missing = run("webhook", "show", "--url", PUBLIC)
    assert missing.exit_code == 1 and "is not registered" in missing.output
    run("webhook", "register", "--url", PUBLIC)
    shown = run("webhook", "show", "--url", PUBLIC)
    assert shown.exit_code == 0, shown.output
    assert "[stsync: ok]" in shown.output and "<secret>" in shown.output
    assert credentials.WEBHOOK_SECRET not in shown.output
    assert "timecard: created,updated" in shown.output
    removed = run("webhook", "remove", "--url", PUBLIC)
    assert removed.exit_code == 0 and "removed webhook(s)" in removed.output
    assert st_state.all("webhook") == []
    assert "nothing to remove" in run("webhook", "remove", "--url", PUBLIC).output


def test_webhook_register_refused_credentials_is_one_line(
    sandbox_net: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SERVICETRADE_CLIENT_SECRET", "not-the-secret-0000")
    res = run("webhook", "register", "--url", PUBLIC)
    assert res.exit_code == 1
    assert "webhook register failed" in res.output and "Traceback" not in res.output


# --- invoice numbers (no default range) ------------------------------------------------------------
def _long_id_invoice(st_state: Any) -> int:
    """A pending invoice as a real account has them: a 16-digit id and no invoice number."""
    record = next(i for i in st_state.all("invoice") if i["status"] == "pending_accounting")
    big = 4_000_000_000_000_000 + int(record["id"])
    st_state.create("invoice", {**record, "id": big, "invoiceNumber": None})
    return big


def test_doctor_invoice_numbers_fail_without_a_range_when_ids_are_too_long(
    sandbox_net: Any, st_state: Any
) -> None:
    run("webhook", "register", "--url", PUBLIC)
    assert lines(run("doctor", "--url", PUBLIC).output)["invoice numbers main"] == "ok"
    big = _long_id_invoice(st_state)
    res = run("doctor", "--url", PUBLIC)
    assert res.exit_code == 1, res.output
    assert lines(res.output)["invoice numbers main"] == "FAIL"
    assert f"(e.g. {big})" in res.output
    assert "[connections.main.invoices] numbers = { prefix, start, end, width }" in res.output


def test_doctor_invoice_numbers_pass_with_a_range(
    sandbox_net: Any, st_state: Any, settings: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _long_id_invoice(st_state)
    toml = Path(settings.config_path).read_text()
    assert "[connections.main.invoices]" in toml, "the test config has an invoices table"
    ranged = tmp_path / "ranged.toml"
    ranged.write_text(
        toml.replace(
            "[connections.main.invoices]",
            '[connections.main.invoices]\nnumbers = { prefix = "N", start = 1, end = 9999, '
            "width = 4 }",
            1,
        )
    )
    monkeypatch.setenv("STSYNC_CONFIG", str(ranged))
    run("webhook", "register", "--url", PUBLIC)
    res = run("doctor", "--url", PUBLIC)
    assert lines(res.output)["invoice numbers main"] == "ok", res.output
    assert "N1..9999" in res.output
