"""Settings: one TOML mapping file (``STSYNC_CONFIG``) plus the environment for secrets (F10, F11).

The environment is read through pydantic-settings (``EnvSettings``: every variable stsync reads,
declared once). Every variable also has a ``<NAME>_FILE`` form holding the path of a file with the
value (Docker/compose secrets under ``/run/secrets``): setting both is an error naming them.

Validated at start-up. A bad value stops the process with a ``ConfigError`` that names the key, the
value and what is allowed. Credentials are ``SecretStr`` and never appear in ``repr``, logs or task
arguments. Nothing falls back silently: every default is written in the model and documented in
``docs/configuration.md``.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from clients.errors import ConfigError
from mappers.rules import ConnectionRules, Route, routes_overlap

CONFIG_ENV = "STSYNC_CONFIG"
DATA_DIR_ENV = "STSYNC_DATA_DIR"
#: ServiceTrade's production API (reference servicetrade-api.md §1); the sandbox only via demo.toml
SERVICETRADE_PRODUCTION_URL = "https://api.servicetrade.com"
#: suffix of the variable that names a file holding a variable's value (Docker secrets)
FILE_SUFFIX = "_FILE"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServiceTradeSettings(Section):
    base_url: str = SERVICETRADE_PRODUCTION_URL
    client_id: str | None = None
    client_secret: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    timeout_s: float = Field(default=30.0, gt=0)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    #: how long a worker keeps job, location and user facts it read (webhooks invalidate
    #: earlier; 0: never cached), see worker/readcache.py
    read_cache_ttl_s: float = Field(default=120.0, ge=0, le=3600)
    #: ServiceTrade's system name for stsync's external ids is per connection (see connections)

    @model_validator(mode="after")
    def _credentials(self) -> ServiceTradeSettings:
        if not (self.client_id and self.client_secret) and not (self.username and self.password):
            raise ValueError(
                "set SERVICETRADE_CLIENT_ID and SERVICETRADE_CLIENT_SECRET (OAuth2) or "
                "SERVICETRADE_USERNAME and SERVICETRADE_PASSWORD (legacy session)"
            )
        return self

    def client_options(self) -> dict[str, Any]:
        """The ServiceTrade client's URL, credentials and timeouts (secrets revealed)."""
        return {
            "base_url": self.base_url,
            "client_id": self.client_id,
            "client_secret": self.client_secret.get_secret_value() if self.client_secret else None,
            "username": self.username,
            "password": self.password.get_secret_value() if self.password else None,
            "timeout_s": self.timeout_s,
            "connect_timeout_s": self.connect_timeout_s,
        }

    @property
    def auth_mode(self) -> Literal["oauth", "session"]:
        return "oauth" if self.client_id and self.client_secret else "session"


class ConnectionSettings(Section):
    """One Spectrum company / instance (F11)."""

    name: str
    base_url: str
    authorization_id: SecretStr
    infolink_url: str
    #: key under which this connection's Spectrum ids are written into ServiceTrade ``externalIds``
    external_id_key: str = "spectrum"
    support_emails: list[str] = Field(default_factory=list)
    #: at most this many Spectrum writes in flight per connection (Spectrum faults under load)
    max_in_flight: int = Field(default=2, ge=1, le=64)
    #: webhook and sweep events flow to this connection automatically (default: only the default
    #: connection); other connections receive records sent to them explicitly (send-job, CLI)
    auto_sync: bool = False
    #: routing between several Spectrum companies (F24): the records this connection takes
    route: Route | None = None
    timeout_s: float = Field(default=30.0, gt=0)
    connect_timeout_s: float = Field(default=5.0, gt=0)
    rules: ConnectionRules

    @property
    def company_code(self) -> str:
        return self.rules.company_code


class IngestSettings(Section):
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    dedupe_ttl_s: int = Field(default=86_400, ge=1)
    #: at most this many concurrent deliveries share one group commit (ingest/group.py)
    group_commit_max: int = Field(default=64, ge=1)
    #: header carrying the token of the "send job" endpoint
    send_job_token: SecretStr | None = None
    #: public https base URL where ServiceTrade reaches the ingest (``stsync webhook``/``doctor``)
    public_url: str = Field(default="", pattern=r"^(https?://\S+)?$")


class ScheduleSettings(Section):
    catch_up_day: Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"] = "mon"
    catch_up_hour: int = Field(default=2, ge=0, le=23)
    catch_up_minute: int = Field(default=0, ge=0, le=59)
    sweep_every_s: int = Field(default=600, ge=10)
    sweep_overlap_s: int = Field(default=120, ge=0)
    po_poll_every_s: int = Field(default=900, ge=10)


class AlertSettings(Section):
    smtp_host: str = ""
    smtp_port: int = Field(default=25, ge=1, le=65535)
    starttls: bool = False
    username: str | None = None
    password: SecretStr | None = None
    sender: str = "stsync@localhost"
    #: 0 = one e-mail per problem; N = at most one digest e-mail per N minutes
    digest_minutes: int = Field(default=0, ge=0)


class FlowerSettings(Section):
    user: str | None = None
    password: SecretStr | None = None
    port: int = Field(default=5555, ge=1, le=65535)


class ReliabilitySettings(Section):
    """Celery and ledger limits (reasons in shared/reference/celery-reliability.md §7)."""

    task_time_limit_s: int = Field(default=300, ge=5)
    task_soft_time_limit_s: int = Field(default=240, ge=4)
    retry_backoff_s: int = Field(default=2, ge=1)
    retry_backoff_max_s: int = Field(default=600, ge=1)
    max_retries: int = Field(default=8, ge=0)
    visibility_timeout_s: int = Field(default=3600, ge=10)
    unacked_restore_interval_s: int = Field(default=10, ge=1)
    #: a record whose task has started this many times without finishing is marked failed
    start_cap: int = Field(default=5, ge=1)
    #: how long a claim on a record holds before another worker may take it over
    lease_s: int = Field(default=330, ge=1)
    worker_concurrency: int = Field(default=4, ge=1)
    #: a record whose Celery retries ran out on a transient cause waits ``retry_later`` this long
    #: before its next round (one delay per round, the last one repeats: 5 min, 15 min, 1 h, 3 h,
    #: then every 6 h) ...
    retry_later_delays_s: list[int] = Field(
        default_factory=lambda: [300, 900, 3600, 10_800, 21_600], min_length=1
    )
    #: ... for at most this long after its first transient failure; then it fails for good
    #: through its record type's own failure path (ServiceTrade status/comment, one alert)
    retry_later_period_s: int = Field(default=259_200, ge=1)
    #: the Beat re-enqueuer runs this often: it queues every pending/retry_later row and every
    #: inbox entry whose due time has passed (docs/reliability.md, "the durable row drives it")
    requeue_every_s: int = Field(default=60, ge=1)
    #: a pending row (or an inbox entry) is due this long after it was last touched when nothing
    #: settled it: long enough for the queued task or its Celery retry to have run (default: the
    #: longest retry countdown plus the task time limit)
    pending_grace_s: int | None = Field(default=None, ge=1)
    #: at most this many due rows are queued per re-enqueuer run (the next run continues)
    requeue_batch: int = Field(default=2000, ge=1)
    #: a worker process looks at its configuration file at most this often (at a task's start)
    #: and reloads it when it changed and is valid; 0 turns the reload off (worker/context.py)
    config_reload_every_s: int = Field(default=30, ge=0)

    @property
    def pending_due_after_s(self) -> int:
        """Seconds after which an untouched pending row / inbox entry is due again."""
        if self.pending_grace_s is not None:
            return self.pending_grace_s
        return self.retry_backoff_max_s + self.task_time_limit_s

    def retry_later_delay_s(self, rounds: int) -> int:
        """The wait before retry_later round ``rounds`` (0-based; the last delay repeats)."""
        delays = self.retry_later_delays_s
        return delays[min(max(rounds, 0), len(delays) - 1)]

    @model_validator(mode="after")
    def _limits(self) -> ReliabilitySettings:
        if self.task_soft_time_limit_s >= self.task_time_limit_s:
            raise ValueError("task_soft_time_limit_s must be below task_time_limit_s")
        if any(d < 1 for d in self.retry_later_delays_s):
            raise ValueError("retry_later_delays_s must be positive seconds")
        need = self.task_time_limit_s + self.retry_backoff_max_s
        if self.visibility_timeout_s <= need:
            raise ValueError(
                f"visibility_timeout_s ({self.visibility_timeout_s}) must exceed "
                f"task_time_limit_s + retry_backoff_max_s ({need}), or Redis redelivers "
                "tasks that are still running or waiting to retry"
            )
        if self.lease_s <= self.task_time_limit_s:
            # a live holder is killed by the hard time limit before its claim runs out; with a
            # shorter lease a slow (not dead) sync is taken over as a crash: two workers run the
            # same record at once and the crash counts toward the poison start cap
            raise ValueError(
                f"lease_s ({self.lease_s}) must exceed task_time_limit_s "
                f"({self.task_time_limit_s}), or a slow sync is taken over while still running"
            )
        return self


class Settings(Section):
    """The whole validated configuration of a deployment."""

    config_path: str | None = None
    timezone: str = "America/New_York"
    data_dir: str = ".stsync"
    broker_url: str | None = None
    #: prefix of every Redis key stsync and Celery write (several deployments on one Redis)
    redis_key_prefix: str = Field(default="", max_length=64, pattern=r"^[A-Za-z0-9_.:-]*$")
    database_url: str = ""
    webhook_secret: SecretStr
    webhook_previous_secret: SecretStr | None = None
    default_connection: str
    servicetrade: ServiceTradeSettings
    connections: dict[str, ConnectionSettings]
    ingest: IngestSettings = IngestSettings()
    schedules: ScheduleSettings = ScheduleSettings()
    alerts: AlertSettings = AlertSettings()
    flower: FlowerSettings = FlowerSettings()
    reliability: ReliabilitySettings = ReliabilitySettings()

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.default_connection not in self.connections:
            raise ValueError(
                f"default_connection {self.default_connection!r} is not one of "
                f"{sorted(self.connections)}"
            )
        _check_routes(self.connections)
        keys = [c.external_id_key for c in self.connections.values()]
        if len(set(keys)) != len(keys):
            raise ValueError("connections must use distinct external_id_key values")
        if len(self.webhook_secret.get_secret_value()) < 16:
            raise ValueError("webhook_secret must be at least 16 characters (WEBHOOK_SECRET)")
        try:
            import zoneinfo

            zoneinfo.ZoneInfo(self.timezone)
        except Exception as exc:  # noqa: BLE001 - any failure means an unknown zone
            raise ValueError(f"timezone {self.timezone!r} is not a known IANA zone") from exc
        return self

    def connection(self, name: str | None = None) -> ConnectionSettings:
        """The named connection (default when None); ConfigError naming the choices otherwise."""
        key = name or self.default_connection
        try:
            return self.connections[key]
        except KeyError:
            raise ConfigError(
                f"unknown connection {key!r}; configured: {', '.join(sorted(self.connections))}",
                field="connection",
                value=key,
            ) from None

    def auto_sync_connections(self) -> list[str]:
        """Connections that receive webhook and sweep events."""
        return [name for name, c in self.connections.items() if c.auto_sync]

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)


# --- the environment ---------------------------------------------------------------------------
def env_value(env: Mapping[str, str], name: str) -> str | None:
    """``name`` from ``env``, or the content of the file ``<name>_FILE`` names; None when unset.

    A file's content is stripped of surrounding whitespace (the trailing newline editors add).
    Both set, an unreadable file or an empty one is a ``ConfigError`` naming the variable.
    """
    direct = env.get(name) or None
    path = env.get(name + FILE_SUFFIX) or None
    if path is None:
        return direct
    if direct is not None:
        raise ConfigError(
            f"both {name} and {name}{FILE_SUFFIX} are set: set only one",
            field=name,
        )
    try:
        value = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(
            f"{name}{FILE_SUFFIX}={path!r}: cannot read the file ({exc.strerror or exc})",
            field=name + FILE_SUFFIX,
        ) from None
    if not value:
        raise ConfigError(f"{name}{FILE_SUFFIX}={path!r}: the file is empty", field=name)
    return value


class _EnvWithFiles(PydanticBaseSettingsSource):
    """The environment mapping given to ``EnvSettings.read``, each variable or its ``_FILE``."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self._env = env

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return env_value(self._env, field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, info in self.settings_cls.model_fields.items():
            value, _, _ = self.get_field_value(info, name)
            if value is not None:
                out[name] = value
        return out


class EnvSettings(BaseSettings):
    """Every environment variable stsync reads (each also as ``<NAME>_FILE``).

    Field names are the variable names. docs/configuration.md and docs/deploy.md list each one
    (a test compares them). Per-connection Authorization IDs live in the variable a connection's
    ``authorization_id_env`` names; they are read with ``env_value`` (``_FILE`` works there too).
    """

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", frozen=True)

    STSYNC_CONFIG: str | None = None
    STSYNC_DATA_DIR: str | None = None
    STSYNC_REDIS_PREFIX: str | None = None
    BROKER_URL: str | None = None
    DATABASE_URL: str | None = None
    WEBHOOK_SECRET: str | None = None
    WEBHOOK_PREVIOUS_SECRET: str | None = None
    SERVICETRADE_BASE_URL: str | None = None
    SERVICETRADE_CLIENT_ID: str | None = None
    SERVICETRADE_CLIENT_SECRET: str | None = None
    SERVICETRADE_USERNAME: str | None = None
    SERVICETRADE_PASSWORD: str | None = None
    SPECTRUM_BASE_URL: str | None = None
    SPECTRUM_AUTHORIZATION_ID: str | None = None
    SPECTRUM_COMPANY_CODE: str | None = None
    SPECTRUM_INFOLINK_URL: str | None = None
    STSYNC_SEND_JOB_TOKEN: str | None = None
    FLOWER_USER: str | None = None
    FLOWER_PASSWORD: str | None = None
    SMTP_PASSWORD: str | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        env = _reading.get()
        return (init_settings, _EnvWithFiles(settings_cls, os.environ if env is None else env))

    @classmethod
    def read(cls, env: Mapping[str, str] | None = None) -> EnvSettings:
        """The variables of ``env`` (default ``os.environ``), each direct or from its file."""
        token = _reading.set(os.environ if env is None else env)
        try:
            return cls()
        finally:
            _reading.reset(token)

    def as_env(self) -> dict[str, str]:
        """The variables that are set, resolved (files read): ``{NAME: value}``."""
        return {k: v for k, v in self.model_dump().items() if isinstance(v, str) and v}


#: the mapping ``EnvSettings.read`` is reading (pydantic-settings builds sources without arguments)
_reading: ContextVar[Mapping[str, str] | None] = ContextVar("stsync_env", default=None)


class _ResolvedEnv(dict[str, str]):
    """The declared variables resolved, plus ``env_value`` for names only the TOML knows."""

    def __init__(self, env: Mapping[str, str]) -> None:
        super().__init__(EnvSettings.read(env).as_env())
        self._raw = env

    def get(self, key: str, default: Any = None) -> Any:
        if key in self:
            return self[key]
        value = env_value(self._raw, key)
        return default if value is None else value


def _check_routes(connections: Mapping[str, ConnectionSettings]) -> None:
    """Routes (F24): once one automatic connection has a route, every automatic one needs one,
    and two routes that the config shows can take the same record are refused."""
    auto = [c for c in connections.values() if c.auto_sync]
    routed = [c for c in auto if c.route is not None]
    if not routed:
        return
    unrouted = [c.name for c in auto if c.route is None]
    if unrouted:
        raise ValueError(
            f"connections.{unrouted[0]}.route: missing, while connections.{routed[0].name} has "
            "a route; every auto_sync connection needs one (a connection without a route would "
            "take every record the routed ones take)"
        )
    for i, a in enumerate(routed):
        for b in routed[i + 1 :]:
            why = routes_overlap(a.route, b.route) if a.route and b.route else None
            if why:
                raise ValueError(
                    f"connections.{b.name}.route: overlaps connections.{a.name}.route ({why}); "
                    "a record would go to both Spectrum companies"
                )


# --- loading -------------------------------------------------------------------------------------
_CONNECTION_KEYS = {
    "base_url",
    "authorization_id_env",
    "infolink_url",
    "external_id_key",
    "support_emails",
    "max_in_flight",
    "timeout_s",
    "connect_timeout_s",
    "auto_sync",
    "route",
}


def _format_errors(exc: ValidationError, source: str, data: Mapping[str, Any]) -> str:
    lines = [f"{source}: invalid configuration"]
    for err in exc.errors():
        parts = [str(p) for p in err["loc"] if p != "__root__"]
        # rules sit directly under [connections.<name>] in the file; "rules" is internal
        if len(parts) > 2 and parts[0] == "connections" and parts[2] == "rules":
            del parts[2]
        loc = ".".join(parts)
        value = err.get("input")
        shown = (
            "<secret>" if "secret" in loc or "password" in loc or "authorization" in loc else value
        )
        if isinstance(shown, dict):
            shown = "{...}"
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"  {loc or '(top level)'} = {shown!r}: {msg}")
    return "\n".join(lines)


def _build_connection(
    name: str, raw: Mapping[str, Any], env: Mapping[str, str], is_default: bool
) -> dict[str, Any]:
    rules = {k: v for k, v in raw.items() if k not in _CONNECTION_KEYS}
    auth_env = raw.get("authorization_id_env", "SPECTRUM_AUTHORIZATION_ID" if is_default else "")
    out: dict[str, Any] = {
        "name": name,
        "base_url": raw.get("base_url", ""),
        "infolink_url": raw.get("infolink_url", ""),
        "authorization_id": env.get(auth_env, "") if auth_env else "",
        "rules": rules,
    }
    out["auto_sync"] = raw.get("auto_sync", is_default)
    for key in (
        "external_id_key",
        "support_emails",
        "max_in_flight",
        "timeout_s",
        "connect_timeout_s",
        "route",
    ):
        if key in raw:
            out[key] = raw[key]
    if not is_default and "external_id_key" not in raw:
        out["external_id_key"] = f"spectrum_{name}"
    if is_default:
        for env_key, target in (
            ("SPECTRUM_BASE_URL", "base_url"),
            ("SPECTRUM_INFOLINK_URL", "infolink_url"),
        ):
            if env.get(env_key):
                out[target] = env[env_key]
        if env.get("SPECTRUM_COMPANY_CODE"):
            out["rules"] = {**rules, "company_code": env["SPECTRUM_COMPANY_CODE"]}
    missing = [k for k in ("base_url", "infolink_url") if not out[k]]
    if missing:
        hint = "SPECTRUM_BASE_URL / SPECTRUM_INFOLINK_URL" if is_default else "the TOML file"
        raise ConfigError(
            f"connections.{name}: {', '.join(missing)} not set (set it in {hint})",
            field=f"connections.{name}.{missing[0]}",
        )
    if not out["authorization_id"]:
        raise ConfigError(
            f"connections.{name}: Authorization ID missing: set the environment variable "
            f"{auth_env or '(authorization_id_env)'}",
            field=f"connections.{name}.authorization_id_env",
        )
    return out


def load_settings(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the TOML file and the environment; ConfigError on any problem."""
    env = _ResolvedEnv(os.environ if env is None else env)
    path = path or env.get(CONFIG_ENV)
    if not path:
        raise ConfigError(
            f"no configuration file: set {CONFIG_ENV} to the path of stsync.toml",
            field=CONFIG_ENV,
        )
    p = Path(path)
    try:
        raw: dict[str, Any] = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: configuration file not found", field=CONFIG_ENV) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: not valid TOML: {exc}", field=CONFIG_ENV) from None

    connections_raw = raw.pop("connections", {})
    if not isinstance(connections_raw, dict) or not connections_raw:
        raise ConfigError(
            f"{p}: at least one [connections.<name>] table is required", field="connections"
        )
    default = raw.pop("default_connection", next(iter(connections_raw)))
    connections = {
        name: _build_connection(name, conn, env, name == default)
        for name, conn in connections_raw.items()
    }
    st = dict(raw.pop("servicetrade", {}))
    for env_key, target in (
        ("SERVICETRADE_BASE_URL", "base_url"),
        ("SERVICETRADE_CLIENT_ID", "client_id"),
        ("SERVICETRADE_CLIENT_SECRET", "client_secret"),
        ("SERVICETRADE_USERNAME", "username"),
        ("SERVICETRADE_PASSWORD", "password"),
    ):
        if env.get(env_key):
            st[target] = env[env_key]
    data_dir = env.get(DATA_DIR_ENV) or raw.pop("data_dir", ".stsync")
    raw.pop("data_dir", None)
    ingest = dict(raw.pop("ingest", {}))
    if env.get("STSYNC_SEND_JOB_TOKEN"):
        ingest["send_job_token"] = env["STSYNC_SEND_JOB_TOKEN"]
    flower = dict(raw.pop("flower", {}))
    if env.get("FLOWER_USER"):
        flower["user"] = env["FLOWER_USER"]
    if env.get("FLOWER_PASSWORD"):
        flower["password"] = env["FLOWER_PASSWORD"]
    alerts = dict(raw.pop("alerts", {}))
    if env.get("SMTP_PASSWORD"):
        alerts["password"] = env["SMTP_PASSWORD"]
    database_url = env.get("DATABASE_URL") or f"sqlite:///{Path(data_dir) / 'ledger.sqlite'}"
    data: dict[str, Any] = {
        **raw,
        "config_path": str(p),
        "data_dir": str(data_dir),
        "broker_url": env.get("BROKER_URL") or None,
        "redis_key_prefix": env.get("STSYNC_REDIS_PREFIX", raw.pop("redis_key_prefix", "")),
        "database_url": database_url,
        "webhook_secret": env.get("WEBHOOK_SECRET", ""),
        "webhook_previous_secret": env.get("WEBHOOK_PREVIOUS_SECRET") or None,
        "default_connection": default,
        "servicetrade": st,
        "connections": connections,
        "ingest": ingest,
        "flower": flower,
        "alerts": alerts,
    }
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, str(p), data)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, loaded once from the environment."""
    return load_settings()
