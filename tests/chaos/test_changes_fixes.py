"""The convergence soak's fixes at the source (``bench/changes.py``): each does what a person
would, so the records that fail by design can heal in both runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.changes import (
    FIXED_EMPLOYEE_CODE,
    FIXED_SALESPERSON_CODE,
    KINDS,
    NOT_YET,
    Change,
    apply_change,
    fixes_at_source,
)
from clients.spectrum import infolink_schema as il
from tests.conftest import DEMO_CONFIG, demo_env
from worker.settings import load_settings


def test_the_fixes_are_planned_once_each_for_what_the_seed_fails(world: Any) -> None:
    assert "fix_service_line" not in {c.kind for c in fixes_at_source(world)}  # no KS job
    world.servicetrade["job"][0]["serviceLine"] = "KS"
    world.servicetrade["job"][1]["serviceLine"] = "KS"
    fixes = fixes_at_source(world)
    assert [c.kind for c in fixes] == ["fix_salesperson", "fix_technician", "fix_service_line"]
    assert {c.kind for c in fixes} <= set(KINDS)
    assert not any("fixed at its source" in n for n in NOT_YET)


def test_fix_service_line_adds_the_map_entry_and_nothing_else(
    tmp_path: Path, world: Any, spectrum_db: Any
) -> None:
    config = tmp_path / "stsync.toml"
    config.write_text(DEMO_CONFIG.read_text())
    env = demo_env(tmp_path, infolink_url=spectrum_db.url, database_url="sqlite://")
    before = load_settings(config, env).connections["main"].rules
    apply_change(None, Change("fix_service_line", 0, service_line="KS", code="100"), config=config)
    after = load_settings(config, env).connections["main"].rules
    assert after.cost_centers.by_service_line == {
        **before.cost_centers.by_service_line,
        "KS": "100",
    }
    assert after.model_dump(exclude={"cost_centers"}) == before.model_dump(exclude={"cost_centers"})


def test_fix_salesperson_and_technician_write_spectrum_then_the_user(
    world: Any, st_state: Any, spectrum_db: Any
) -> None:
    sales = world.landmarks["salesperson_without_spectrum_id"]
    tech = world.landmarks["tech_without_spectrum_id"]
    apply_change(
        st_state,
        Change("fix_salesperson", sales, code=FIXED_SALESPERSON_CODE),
        spectrum_db=spectrum_db,
    )
    apply_change(
        st_state, Change("fix_technician", tech, code=FIXED_EMPLOYEE_CODE), spectrum_db=spectrum_db
    )
    assert st_state.get("user", sales)["externalIds"]["spectrum"] == FIXED_SALESPERSON_CODE
    assert st_state.get("user", tech)["externalIds"]["spectrum"] == FIXED_EMPLOYEE_CODE
    assert spectrum_db.rows(il.salespersons.name, Salesperson_Code=FIXED_SALESPERSON_CODE)
    [row] = spectrum_db.rows(il.employees.name, Employee_Code=FIXED_EMPLOYEE_CODE)
    assert row["Employment_Status"] == "A"
