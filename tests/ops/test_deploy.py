"""The production compose file and image (F20): the YAML parses, every stsync service runs a real
``stsync`` command line, exactly one Beat, config read-only, migrations first, healthchecks; the
ingest only behind the TLS proxy, logs rotated everywhere, a Beat healthcheck that works, a ledger
backup whose dump restores, secrets as files (``<VAR>_FILE``)."""

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
        "proxy",
        "redis",
        "postgres",
        "backup",
        "migrate",
        "ingest",
        "worker",
        "beat",
        "flower",
    }
    assert set(stsync_services(compose)) == {"migrate", "ingest", "worker", "beat", "flower"}


def test_every_service_command_is_a_real_stsync_command(compose: dict[str, Any]) -> None:
    seen = {}
    for name, svc in stsync_services(compose).items():
        args = [interpolate(str(a)) for a in svc["command"]]
        seen[name] = parse_stsync(args)
    assert seen == {
        "migrate": ["db", "upgrade"],
        "ingest": ["ingest"],
        "worker": ["worker"],
        "beat": ["beat"],
        "flower": ["flower"],
    }
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
        assert env["DATABASE_URL_FILE"] == "/run/secrets/database_url"
        assert env["BROKER_URL"].startswith("redis://")
        assert svc["env_file"] == ["./config/stsync.env"]
        if name != "migrate":
            deps = svc["depends_on"]
            assert deps["migrate"]["condition"] == "service_completed_successfully"
            assert (
                deps["redis"]["condition"] == deps["postgres"]["condition"] == ("service_healthy")
            )
    assert services["migrate"]["restart"] == "no"


def test_healthchecks_and_shutdown(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("redis", "postgres", "ingest", "worker", "beat", "flower", "backup"):
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


# --- hardening: TLS proxy, log rotation, Beat healthcheck, backup, secrets as files -------------
CADDYFILE = REPO / "deploy" / "Caddyfile"
DEPLOY_DOC = REPO / "docs" / "deploy.md"

#: every secret stsync reads from the environment -> the Docker secret holding it
SECRETS = {
    "DATABASE_URL": "database_url",
    "WEBHOOK_SECRET": "webhook_secret",
    "SERVICETRADE_CLIENT_SECRET": "servicetrade_client_secret",
    "SPECTRUM_AUTHORIZATION_ID": "spectrum_authorization_id",
    "SPECTRUM_INFOLINK_URL": "spectrum_infolink_url",
    "STSYNC_SEND_JOB_TOKEN": "send_job_token",
    "SMTP_PASSWORD": "smtp_password",
    "FLOWER_PASSWORD": "flower_password",
}


def test_compose_ingest_is_reached_only_through_the_tls_proxy(compose: dict[str, Any]) -> None:
    services = compose["services"]
    ingest = services["ingest"]
    assert "ports" not in ingest, "the ingest must not be published on the host"
    assert ingest["expose"] == ["8800"]
    proxy = services["proxy"]
    assert proxy["image"].startswith("caddy:")
    assert sorted(proxy["ports"]) == ["443:443", "80:80"]
    assert "./deploy/Caddyfile:/etc/caddy/Caddyfile:ro" in proxy["volumes"]
    assert proxy["depends_on"]["ingest"]["condition"] == "service_healthy"
    assert "STSYNC_DOMAIN" in proxy["environment"]
    caddy = CADDYFILE.read_text()
    code = "\n".join(ln.split("#", 1)[0] for ln in caddy.splitlines())
    assert "{$STSYNC_DOMAIN} {" in code  # a site address: Caddy's automatic HTTPS
    assert "reverse_proxy ingest:8800" in code
    assert "@ingest path /webhooks/servicetrade/* /healthz" in code
    assert "respond 404" in code
    # no access log: the webhook secret is in the path
    assert not re.search(r"^\s*log\b", code, re.M)
    # the ingest's own port in the compose file is the one the proxy targets
    assert ingest["command"][-1] == "8800"


def test_compose_rotates_the_logs_of_every_service(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        logging = svc.get("logging")
        assert logging, f"{name}: no log rotation"
        assert logging["driver"] in ("json-file", "local"), name
        assert logging["options"]["max-size"] and int(logging["options"]["max-file"]) >= 2, name


def test_compose_beat_healthcheck_is_a_real_stsync_command(compose: dict[str, Any]) -> None:
    test = compose["services"]["beat"]["healthcheck"]["test"]
    assert test[:2] == ["CMD", "stsync"]
    assert parse_stsync(test[2:]) == ["beat"] and "--healthcheck" in test
    # the data directory holding the heartbeat is Beat's own volume
    assert "beat-data:/data" in compose["services"]["beat"]["volumes"]
    assert compose["services"]["beat"]["environment"]["STSYNC_DATA_DIR"] == "/data"


def test_compose_secrets_are_files(compose: dict[str, Any]) -> None:
    import inspect

    import worker.settings

    declared = compose["secrets"]
    settings_source = inspect.getsource(worker.settings)
    for var, secret in SECRETS.items():
        assert f'"{var}"' in settings_source, f"{var} is not a variable stsync reads"
        assert declared[secret] == {"file": f"./secrets/{secret}"}
        for name, svc in stsync_services(compose).items():
            assert svc["environment"][f"{var}_FILE"] == f"/run/secrets/{secret}", (name, var)
            assert secret in svc["secrets"], (name, secret)
            assert var not in svc["environment"], f"{name}: {var} in clear"
    postgres = compose["services"]["postgres"]["environment"]
    assert postgres["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    assert "POSTGRES_PASSWORD" not in postgres
    # no password travels through compose variables or command lines any more
    text = COMPOSE.read_text()
    assert "${POSTGRES_PASSWORD" not in text
    for svc in compose["services"].values():
        for value in (svc.get("environment") or {}).values():
            assert not re.search(r"://[^/@\s]+:[^/@\s]+@", str(value)), value


def test_compose_backup_service_dumps_the_ledger(compose: dict[str, Any]) -> None:
    backup = compose["services"]["backup"]
    assert backup["image"] == compose["services"]["postgres"]["image"]
    assert backup["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "./backups:/backups" in backup["volumes"]
    assert "postgres_password" in backup["secrets"]
    script = interpolate(backup["command"][0])
    assert "pg_dump --format=custom" in script
    assert "stsync-*.dump" in " ".join(backup["healthcheck"]["test"])


RESTORE = "pg_restore --clean --if-exists --no-owner"


@pytest.mark.postgres
def test_compose_backup_script_writes_a_dump_that_restores(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    """Run the backup service's own script (compose's ``$$`` undone) against the test server,
    then the documented restore into an empty database: the ledger rows come back."""
    import os
    import shutil
    import signal
    import subprocess
    import uuid

    from sqlalchemy import create_engine, text

    from tests.conftest import PG_URL
    from worker.ledger import Ledger, RecordKey, Status
    from worker.serve import wait_for

    if not shutil.which("pg_dump") or not shutil.which("pg_restore"):
        pytest.fail("pg_dump/pg_restore are not installed (apt-get install postgresql-client)")
    assert RESTORE in DEPLOY_DOC.read_text(), "docs/deploy.md must give the restore command"
    source, target = (f"stsync_bk_{uuid.uuid4().hex[:8]}" for _ in range(2))
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    base = PG_URL.rsplit("/", 1)[0]
    with admin.connect() as c:
        c.execute(text(f'create database "{source}"'))
        c.execute(text(f'create database "{target}"'))
    try:
        led = Ledger(f"{base}/{source}")
        led.migrate()
        key = RecordKey("main", "invoice", "1036")
        led.ensure(key)
        led.mark_done(key, spectrum_key="ST1036", payload_digest=None, state={})
        led.set_watermark("main", "sweep:invoice", "1700000000")
        led.dispose()

        backups = tmp_path / "backups"
        backups.mkdir()
        password = tmp_path / "postgres_password"
        password.write_text("")
        script = compose["services"]["backup"]["command"][0].replace("$$", "$")
        script = script.replace("/run/secrets/postgres_password", str(password))
        script = script.replace("/backups", str(backups))
        env = {
            **os.environ,
            **{k: str(v) for k, v in compose["services"]["backup"]["environment"].items()},
        }
        env.update(
            {
                "PGHOST": "127.0.0.1",
                "PGUSER": "root",
                "PGDATABASE": source,
                "BACKUP_EVERY_S": "3600",
                "BACKUP_KEEP_DAYS": "14",
            }
        )
        proc = subprocess.Popen(["sh", "-c", script], env=env, start_new_session=True)
        try:
            dump = wait_for(
                lambda: next(iter(backups.glob("stsync-*.dump")), None), 60, 0.2, "the first dump"
            )
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        assert not list(backups.glob("*.part"))
        subprocess.run(
            [*RESTORE.split(), "-h", "127.0.0.1", "-U", "root", "-d", target, str(dump)],
            check=True,
            timeout=120,
        )
        restored = Ledger(f"{base}/{target}")
        rec = restored.get(key)
        assert rec is not None and rec.status is Status.DONE and rec.spectrum_key == "ST1036"
        assert restored.get_watermark("main", "sweep:invoice") == "1700000000"
        restored.dispose()
    finally:
        with admin.connect() as c:
            for db in (source, target):
                c.execute(text(f'drop database if exists "{db}" with (force)'))
        admin.dispose()


@pytest.mark.e2e
def test_compose_beat_healthcheck_follows_the_heartbeat(tmp_path: Path, redis_prefix: str) -> None:
    """A real ``stsync beat`` touches its heartbeat; ``stsync beat --healthcheck`` says healthy,
    and unhealthy once the heartbeat is old (a hung Beat) or missing (never started)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from cli.beat_health import MAX_AGE_S, heartbeat_path
    from tests.ops.test_flower import env_for
    from worker.serve import wait_for

    env = {**os.environ, **env_for(tmp_path, redis_prefix)}
    data = Path(env["STSYNC_DATA_DIR"])
    check = [sys.executable, "-m", "cli.main", "beat", "--healthcheck"]
    never = subprocess.run(check, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert never.returncode == 1 and "never ticked" in never.stderr
    log = tmp_path / "beat.log"
    with open(log, "wb") as fh:
        beat = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "beat", "--loglevel", "INFO"],
            cwd=REPO,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(
            lambda: heartbeat_path(data).exists() or beat.poll() is not None,
            60,
            0.2,
            "the first heartbeat",
        )
        assert beat.poll() is None, log.read_text()[-3000:]
        ok = subprocess.run(check, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
        assert ok.returncode == 0 and "beat ticked" in ok.stdout, ok.stdout + ok.stderr
    finally:
        os.killpg(beat.pid, signal.SIGTERM)
        beat.wait(timeout=30)
    stale = time.time() - MAX_AGE_S - 5
    os.utime(heartbeat_path(data), (stale, stale))
    hung = subprocess.run(check, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert hung.returncode == 1 and "has not ticked for" in hung.stderr
