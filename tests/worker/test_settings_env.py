"""The environment through pydantic-settings: ``<NAME>_FILE`` secrets, production defaults (issue 14)."""

from __future__ import annotations

from pathlib import Path

import pytest

from clients.errors import ConfigError
from tests.conftest import DEMO_CONFIG, demo_env
from worker.settings import SERVICETRADE_PRODUCTION_URL, EnvSettings, load_settings

SECRET = "file-secret-value-0123456789"


def env(tmp: Path, **extra: str) -> dict[str, str]:
    return demo_env(tmp, infolink_url="sqlite://", database_url="sqlite://", extra=extra)


def secret_file(tmp: Path, name: str, text: str) -> str:
    p = tmp / name
    p.write_text(text)
    return str(p)


def test_every_secret_can_come_from_a_file(tmp_path: Path) -> None:
    base = env(tmp_path)
    files = {}
    for name in (
        "WEBHOOK_SECRET",
        "SERVICETRADE_CLIENT_SECRET",
        "SPECTRUM_AUTHORIZATION_ID",
        "STSYNC_SEND_JOB_TOKEN",
        "FLOWER_PASSWORD",
        "SMTP_PASSWORD",
        "DATABASE_URL",
    ):
        value = base.pop(name, None) or f"{name.lower()}-{SECRET}"
        if name == "DATABASE_URL":
            value = f"sqlite:///{tmp_path / 'from-file.sqlite'}"
        files[name] = value
        # a trailing newline (as editors and `echo` write it) is not part of the value
        base[f"{name}_FILE"] = secret_file(tmp_path, name.lower(), value + "\n")
    s = load_settings(DEMO_CONFIG, base)
    assert s.webhook_secret.get_secret_value() == files["WEBHOOK_SECRET"]
    assert s.servicetrade.client_secret is not None
    assert s.servicetrade.client_secret.get_secret_value() == files["SERVICETRADE_CLIENT_SECRET"]
    assert s.connection().authorization_id.get_secret_value() == files["SPECTRUM_AUTHORIZATION_ID"]
    assert s.ingest.send_job_token is not None
    assert s.ingest.send_job_token.get_secret_value() == files["STSYNC_SEND_JOB_TOKEN"]
    assert s.flower.password is not None
    assert s.flower.password.get_secret_value() == files["FLOWER_PASSWORD"]
    assert s.alerts.password is not None
    assert s.alerts.password.get_secret_value() == files["SMTP_PASSWORD"]
    assert s.database_url == files["DATABASE_URL"]
    assert SECRET not in repr(s)


def test_a_named_authorization_id_variable_has_a_file_form_too(tmp_path: Path) -> None:
    toml = tmp_path / "two.toml"
    toml.write_text(
        DEMO_CONFIG.read_text()
        + '\n[connections.xyz]\ncompany_code = "XYZ"\nbase_url = "http://x"\n'
        'infolink_url = "sqlite://"\nauthorization_id_env = "SPECTRUM_XYZ_AUTH"\n'
    )
    e = env(tmp_path, SPECTRUM_XYZ_AUTH_FILE=secret_file(tmp_path, "xyz", "xyz-auth-id\n"))
    s = load_settings(toml, e)
    assert s.connection("xyz").authorization_id.get_secret_value() == "xyz-auth-id"


def test_both_forms_set_is_refused_naming_the_variable(tmp_path: Path) -> None:
    e = env(tmp_path, WEBHOOK_SECRET_FILE=secret_file(tmp_path, "w", SECRET))
    assert e["WEBHOOK_SECRET"]
    with pytest.raises(ConfigError, match="both WEBHOOK_SECRET and WEBHOOK_SECRET_FILE") as info:
        load_settings(DEMO_CONFIG, e)
    assert info.value.field == "WEBHOOK_SECRET"


@pytest.mark.parametrize(
    ("content", "expect"), [(None, "cannot read the file"), ("  \n", "the file is empty")]
)
def test_unreadable_or_empty_file_names_the_variable(
    tmp_path: Path, content: str | None, expect: str
) -> None:
    e = env(tmp_path)
    e.pop("SERVICETRADE_CLIENT_SECRET")
    path = tmp_path / "missing" if content is None else Path(secret_file(tmp_path, "c", content))
    e["SERVICETRADE_CLIENT_SECRET_FILE"] = str(path)
    with pytest.raises(ConfigError, match=expect) as info:
        load_settings(DEMO_CONFIG, e)
    assert "SERVICETRADE_CLIENT_SECRET_FILE" in str(info.value)


def test_env_settings_declares_what_it_reads(tmp_path: Path) -> None:
    e = EnvSettings.read({"BROKER_URL": "redis://r:6379/0", "UNRELATED": "x", "FLOWER_USER": ""})
    assert e.as_env() == {"BROKER_URL": "redis://r:6379/0"}


def test_servicetrade_defaults_to_production_the_sandbox_only_in_the_demo(tmp_path: Path) -> None:
    e = env(tmp_path)
    e.pop("SERVICETRADE_BASE_URL", None)
    no_base = tmp_path / "prod.toml"
    no_base.write_text(DEMO_CONFIG.read_text().replace('base_url = "http://127.0.0.1:8801"\n', ""))
    assert "8801" not in no_base.read_text()
    assert load_settings(no_base, e).servicetrade.base_url == "https://api.servicetrade.com"
    assert SERVICETRADE_PRODUCTION_URL == "https://api.servicetrade.com"
    assert load_settings(DEMO_CONFIG, e).servicetrade.base_url == "http://127.0.0.1:8801"


def test_a_missing_secret_names_the_variable(tmp_path: Path) -> None:
    e = env(tmp_path)
    e.pop("SPECTRUM_AUTHORIZATION_ID")
    with pytest.raises(ConfigError, match="SPECTRUM_AUTHORIZATION_ID"):
        load_settings(DEMO_CONFIG, e)
