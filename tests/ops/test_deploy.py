"""The production compose file and image (F20): the YAML parses, every stsync service runs a real
``stsync`` command line, exactly one Beat, config read-only, migrations first, healthchecks."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer

from cli.main import app
from tests.conftest import REPO

COMPOSE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
_VAR = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::?[-?]([^}]*))?\}")


def load_yaml(path: Path) -> Any:
    """A real YAML parser (PyYAML, a dev dependency): the point is to know the file is valid."""
    import yaml

    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = load_yaml(COMPOSE)
    assert isinstance(data, dict)
    return data


def interpolate(value: str) -> str:
    """Compose's ``${VAR:-default}`` with defaults (required ones become a placeholder)."""
    return _VAR.sub(lambda m: m.group(2) or f"<{m.group(1)}>", value).replace("$$", "$")


def parse_stsync(args: list[str]) -> list[str]:
    """Parse ``stsync <args>`` with the real CLI definition; the resolved command path."""
    cmd: Any = typer.main.get_command(app)
    path: list[str] = []
    ctx = cmd.make_context("stsync", list(args))
    while hasattr(cmd, "resolve_command"):  # a group (typer carries its own click)
        rest = [*(getattr(ctx, "_protected_args", None) or []), *ctx.args]
        name, sub, rest = cmd.resolve_command(ctx, rest)
        assert sub is not None and name is not None
        path.append(name)
        ctx = sub.make_context(name, rest, parent=ctx)
        cmd = sub
    return path


def stsync_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in compose["services"].items() if s.get("image") == "stsync:latest"}


def test_the_services_are_there(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {
        "redis", "postgres", "migrate", "ingest", "worker", "beat", "flower"}
    assert set(stsync_services(compose)) == {"migrate", "ingest", "worker", "beat", "flower"}


def test_every_service_command_is_a_real_stsync_command(compose: dict[str, Any]) -> None:
    seen = {}
    for name, svc in stsync_services(compose).items():
        args = [interpolate(str(a)) for a in svc["command"]]
        seen[name] = parse_stsync(args)
    assert seen == {"migrate": ["db", "upgrade"], "ingest": ["ingest"], "worker": ["worker"],
                    "beat": ["beat"], "flower": ["flower"]}
    with pytest.raises(Exception, match="no-such-option") as bad:
        parse_stsync(["worker", "--no-such-option"])
    assert type(bad.value).__name__ == "NoSuchOption"


def test_one_beat_config_read_only_migrations_first(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["beat"]["deploy"]["replicas"] == 1
    for name, svc in stsync_services(compose).items():
        mounts = [v for v in svc["volumes"] if v.endswith("/config/stsync.toml:ro")]
        assert mounts, f"{name}: the config is not mounted read-only"
        env = svc["environment"]
        assert env["STSYNC_CONFIG"] == "/config/stsync.toml"
        assert env["DATABASE_URL"].startswith("postgresql+psycopg://")
        assert env["BROKER_URL"].startswith("redis://")
        assert svc["env_file"] == ["./secrets/stsync.env"]
        if name != "migrate":
            deps = svc["depends_on"]
            assert deps["migrate"]["condition"] == "service_completed_successfully"
            assert deps["redis"]["condition"] == deps["postgres"]["condition"] == (
                "service_healthy")
    assert services["migrate"]["restart"] == "no"


def test_healthchecks_and_shutdown(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("redis", "postgres", "ingest", "worker", "flower"):
        assert services[name]["healthcheck"]["test"], name
    assert "/healthz" in " ".join(services["ingest"]["healthcheck"]["test"])
    assert "/healthcheck" in " ".join(services["flower"]["healthcheck"]["test"])
    # the worker's soft shutdown (30 s, worker/celery_app.py) fits in the grace period
    assert int(services["worker"]["stop_grace_period"].rstrip("s")) > 30
    redis_cmd = services["redis"]["command"]
    assert "noeviction" in redis_cmd and "--appendonly" in redis_cmd
    assert services["flower"]["ports"] == ["127.0.0.1:5555:5555"]


def test_the_image_holds_every_package_and_runs_stsync() -> None:
    text = DOCKERFILE.read_text()
    for package in ("worker", "tasks", "mappers", "clients", "sandbox"):
        assert f"COPY {package} ./{package}" in text, package
    assert "beat_schedule.py" in text
    assert 'ENTRYPOINT ["stsync"]' in text
    assert "USER stsync" in text and "chown stsync /data" in text
