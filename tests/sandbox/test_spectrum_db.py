"""Spectrum simulator: the SpectrumDB API, and reading the sandbox's Info-Link tables from outside
with plain SQLAlchemy, as stsync does in production (§11)."""

from __future__ import annotations

import threading
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from clients.spectrum import infolink_schema as il
from sandbox.spectrum.app import create_app
from sandbox.spectrum.db import SpectrumDB
from tests.sandbox.test_spectrum_support import call, put_rows, seed_rows


def test_every_infolink_table_exists() -> None:
    db = SpectrumDB()
    names = set(sa.inspect(db.engine).get_table_names())
    assert set(il.metadata.tables) <= names


def test_load_count_rows_reset() -> None:
    db = SpectrumDB()
    db.load(
        {
            "CR_TERMS_MC": [
                {"Company_Code": "ABC", "Terms_Code": "N"},
                {"Company_Code": "XYZ", "Terms_Code": "N", "Description": "Net"},
            ],
            "CR_INVOICE_HEADER_MC": [
                {
                    "Company_Code": "ABC",
                    "Invoice_Or_Transaction": "1",
                    "Invoice_Date": "2026-03-02",
                    "Invoice_Amount": "10.5",
                },
                {
                    "Company_Code": "ABC",
                    "Invoice_Or_Transaction": "2",
                    "Invoice_Date": "03/03/2026",
                    "Invoice_Amount": 4,
                },
            ],
        }
    )
    assert db.count("CR_TERMS_MC") == 2
    assert db.count("CR_TERMS_MC", Company_Code="XYZ") == 1
    assert [r["Company_Code"] for r in db.rows("CR_TERMS_MC")] == ["ABC", "XYZ"]
    first, second = db.rows("CR_INVOICE_HEADER_MC")
    assert first["Invoice_Date"] == date(2026, 3, 2)
    assert first["Invoice_Amount"] == Decimal("10.50")
    assert second["Invoice_Date"] == date(2026, 3, 3)
    assert db.count("CR_INVOICE_HEADER_MC", Invoice_Date="2026-03-03") == 1
    db.reset()
    assert db.count("CR_TERMS_MC") == 0
    assert db.count("CR_INVOICE_HEADER_MC") == 0


def test_load_names_bad_tables_and_columns() -> None:
    db = SpectrumDB()
    with pytest.raises(KeyError, match="NOPE"):
        db.load({"NOPE": [{}]})
    with pytest.raises(ValueError, match="Colour"):
        db.load({"CR_TERMS_MC": [{"Company_Code": "ABC", "Colour": "red"}]})
    with pytest.raises(KeyError, match="Colour"):
        db.count("CR_TERMS_MC", Colour="red")


def test_column_defaults_apply_to_seed_rows() -> None:
    db = SpectrumDB()
    db.load({"JC_JOB_MASTER_MC": [{"Company_Code": "ABC", "Job_Number": "J1"}]})
    assert db.rows("JC_JOB_MASTER_MC")[0]["Status_Code"] == "A"


def test_file_database_is_readable_by_another_engine_while_the_sandbox_writes(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'sub' / 'spectrum.sqlite'}"
    db = SpectrumDB(url)
    db.load(seed_rows())
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    reader = sa.create_engine(url)  # what stsync does with its Info-Link URL
    app = create_app(db)
    errors: list[BaseException] = []

    def read_loop() -> None:
        try:
            for _ in range(50):
                with reader.connect() as conn:
                    conn.execute(sa.select(sa.func.count()).select_from(il.jobs)).scalar_one()
        except BaseException as exc:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(exc)

    thread = threading.Thread(target=read_loop)
    with TestClient(app) as c:
        thread.start()
        for i in range(20):
            job = {
                "Company_Code": "ABC",
                "Job_Number": f"F{i:04d}",
                "Taxable_Flag": "N",
                "Price_Method_Code": "T",
            }
            assert put_rows(call(c, "AddJob", job)) == []
        thread.join()
    assert errors == []
    with reader.connect() as conn:
        numbers = (
            conn.execute(sa.select(il.jobs.c.Job_Number).where(il.jobs.c.Job_Number.like("F%")))
            .scalars()
            .all()
        )
    assert len(numbers) == 20
    reader.dispose()
    db.dispose()


def test_memory_database_is_shared_across_threads() -> None:
    db = SpectrumDB()
    seen: list[int] = []

    def worker() -> None:
        db.load({"CR_TERMS_MC": [{"Company_Code": "ABC", "Terms_Code": "X"}]})
        seen.append(db.count("CR_TERMS_MC"))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert db.count("CR_TERMS_MC") == 8
    assert sorted(seen)[-1] == 8


def test_tables_endpoint_and_http_load(tmp_path: Path) -> None:
    with TestClient(create_app()) as c:
        resp = c.post(
            "/_sandbox/spectrum/load",
            json={"CR_TERMS_MC": [{"Company_Code": "ABC", "Terms_Code": "N"}]},
        )
        assert resp.json() == {"CR_TERMS_MC": 1}
        assert c.get("/_sandbox/spectrum/tables/CR_TERMS_MC").json() == [
            {"Company_Code": "ABC", "Terms_Code": "N", "Description": None}
        ]
        assert c.get("/_sandbox/spectrum/tables/NOPE").status_code == 404
        bad = c.post("/_sandbox/spectrum/load", json={"CR_TERMS_MC": [{"Nope": 1}]})
        assert bad.status_code == 422
