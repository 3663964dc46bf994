"""Settings: a bad value stops start-up with the key, the value and what is allowed (F10, F11)."""

from __future__ import annotations

from pathlib import Path

import pytest

from clients.errors import ConfigError
from tests.conftest import DEMO_CONFIG, demo_env
from worker.settings import load_settings


def env(tmp: Path, **extra: str) -> dict[str, str]:
    return demo_env(tmp, infolink_url="sqlite://", database_url="sqlite://", extra=extra)


def write(tmp: Path, text: str) -> Path:
    p = tmp / "c.toml"
    p.write_text(text)
    return p


def test_demo_config_loads(tmp_path: Path) -> None:
    s = load_settings(DEMO_CONFIG, env(tmp_path))
    conn = s.connection()
    assert conn.name == "main" and conn.company_code == "ABC"
    assert conn.rules.cost_centers.price_method["200"] == "F"
    assert s.auto_sync_connections() == ["main"]
    assert "apxK7Q2M9TZ" not in repr(s)  # secrets never in repr


@pytest.mark.parametrize(
    ("replace", "by", "expect"),
    [
        ('number_prefix = "T"', 'number_prefix = "T/"', "connections.main.jobs.number_prefix"),
        (
            'codes = { prefix = "C", start = 1, end = 99999, width = 5 }',
            'codes = { prefix = "CUSTX", start = 1, end = 99999999, width = 5 }',
            "Spectrum allows 10",
        ),
        ('"200" = "F"', '"200" = "Q"', "price_method"),
        ('by_service_line = { SP = "100"', 'by_service_line = { SP = "999"', "is not one of codes"),
        (
            'pm_tag_pattern = "^PM:(?P<pm>[A-Za-z0-9_.]{1,15})$"',
            'pm_tag_pattern = "^PM:(.*)$"',
            "named group",
        ),
        ('mode = "jc"', 'mode = "erp"', "connections.main.mode"),
        ('timezone = "America/New_York"', 'timezone = "Mars/Olympus"', "timezone"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, replace: str, by: str, expect: str) -> None:
    text = DEMO_CONFIG.read_text()
    assert replace in text
    with pytest.raises(ConfigError) as exc:
        load_settings(write(tmp_path, text.replace(replace, by, 1)), env(tmp_path))
    assert expect in str(exc.value)


def test_unknown_key_is_refused_not_ignored(tmp_path: Path) -> None:
    text = DEMO_CONFIG.read_text().replace(
        "[connections.main.jobs]", '[connections.main.jobs]\nnumber_prefx = "T"'
    )
    with pytest.raises(ConfigError, match="number_prefx"):
        load_settings(write(tmp_path, text), env(tmp_path))


def test_missing_secret_names_the_variable(tmp_path: Path) -> None:
    e = env(tmp_path)
    del e["SPECTRUM_AUTHORIZATION_ID"]
    with pytest.raises(ConfigError, match="SPECTRUM_AUTHORIZATION_ID"):
        load_settings(DEMO_CONFIG, e)
    e = env(tmp_path)
    del e["SERVICETRADE_CLIENT_SECRET"]
    with pytest.raises(ConfigError, match="SERVICETRADE_CLIENT_ID"):
        load_settings(DEMO_CONFIG, e)
    e = env(tmp_path, WEBHOOK_SECRET="short")
    with pytest.raises(ConfigError, match="webhook_secret"):
        load_settings(DEMO_CONFIG, e)


def test_no_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="STSYNC_CONFIG"):
        load_settings(None, env(tmp_path))
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml", env(tmp_path))
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write(tmp_path, "a = ["), env(tmp_path))


def test_second_connection_with_its_own_credentials(tmp_path: Path) -> None:
    text = DEMO_CONFIG.read_text() + (
        '\n[connections.xyz]\ncompany_code = "XYZ"\nbase_url = "http://s2"\n'
        'infolink_url = "sqlite://"\nauthorization_id_env = "SPECTRUM_XYZ_AUTH"\n'
    )
    s = load_settings(write(tmp_path, text), env(tmp_path, SPECTRUM_XYZ_AUTH="apxSECOND01"))
    xyz = s.connection("xyz")
    assert xyz.company_code == "XYZ" and xyz.external_id_key == "spectrum_xyz"
    assert xyz.authorization_id.get_secret_value() == "apxSECOND01"
    assert not xyz.auto_sync
    with pytest.raises(ConfigError, match="unknown connection 'nope'"):
        s.connection("nope")
    with pytest.raises(ConfigError, match="SPECTRUM_XYZ_AUTH"):
        load_settings(write(tmp_path, text), env(tmp_path))


def test_visibility_timeout_must_cover_time_limit_and_backoff(tmp_path: Path) -> None:
    text = DEMO_CONFIG.read_text() + "\n[reliability]\nvisibility_timeout_s = 600\n"
    with pytest.raises(ConfigError, match="visibility_timeout_s"):
        load_settings(write(tmp_path, text), env(tmp_path))


def test_lease_must_outlive_the_hard_time_limit_under_load(tmp_path: Path) -> None:
    """A lease shorter than the task's hard time limit lets a sync that is slow (a loaded
    machine), not dead, be taken over while still running: two workers on one record, and a
    "crash" counted toward the poison start cap. Seen as an e2e timecard left unfinished under
    load with the test config's 20 s lease and 60 s time limit."""
    text = DEMO_CONFIG.read_text() + (
        "\n[reliability]\ntask_time_limit_s = 60\ntask_soft_time_limit_s = 50\nlease_s = 20\n"
    )
    with pytest.raises(ConfigError, match="lease_s"):
        load_settings(write(tmp_path, text), env(tmp_path))
    ok = text.replace("lease_s = 20", "lease_s = 65")
    assert load_settings(write(tmp_path, ok), env(tmp_path)).reliability.lease_s == 65
