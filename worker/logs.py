"""Structured logs with secrets redacted at one choke point (F16, R3).

JSON lines when stderr is not a terminal, readable text otherwise. The redaction filter replaces
every configured secret (webhook secret, Authorization IDs, client secrets, passwords, the password
part of the database, broker and Info-Link URLs) and anything that looks like a bearer or basic
token, a token or secret field, a PHPSESSID or URL credentials with ``[REDACTED]`` in the message,
the arguments, the extra fields and the traceback, on every handler: the root logger's and those
of loggers that do not propagate (Celery's task logger).

Every process installs it: ``stsync worker``/``beat``/``ingest`` call ``configure_logging``, and a
worker or Beat started as ``celery -A worker.celery_app`` gets it from Celery's logging signals
(``celery_logging_hook``, connected in ``worker/celery_app.py``).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from worker.settings import Settings

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
_PATTERNS = [
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"(?i)(basic\s+)[A-Za-z0-9+/=]{8,}"),
    re.compile(r"(?i)(phpsessid=)[^;\s]+"),
    re.compile(r"(?i)(authorization_id>)[^<]+"),
    re.compile(r"(/webhooks/servicetrade/)[^/\s?\"']+"),
    # form and query fields, JSON fields: client_secret=..., "access_token": "..."
    re.compile(
        r"(?i)((?:client_secret|password|access_token|refresh_token|authorization_id)"
        r"[\"']?\s*[:=]\s*[\"']?)[^\"'&\s,}]+"
    ),
    # credentials in URLs: scheme://user:password@host
    re.compile(r"(?i)([a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@/\s]+(?=@)"),
]
REDACTED = "[REDACTED]"
#: a text without any of these (any case) cannot match a pattern above: each needs one of them
_NEEDS = re.compile(
    r"(?i)bearer|basic|phpsessid=|authorization_id|/webhooks/servicetrade/|client_secret"
    r"|password|access_token|refresh_token|://"
)


def _url_password(url: str | None) -> str | None:
    if not url or "://" not in url:
        return None
    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return unquote(password) if password else None


def secrets_of(settings: Settings) -> list[str]:
    """Every secret value in the settings (to be scrubbed from logs)."""
    values: list[str] = [settings.webhook_secret.get_secret_value()]
    urls = [settings.database_url, settings.broker_url]
    urls += [c.infolink_url for c in settings.connections.values()]
    values += [p for p in map(_url_password, urls) if p]
    if settings.webhook_previous_secret:
        values.append(settings.webhook_previous_secret.get_secret_value())
    st = settings.servicetrade
    for s in (st.client_secret, st.password):
        if s is not None:
            values.append(s.get_secret_value())
    for conn in settings.connections.values():
        values.append(conn.authorization_id.get_secret_value())
    for s2 in (settings.ingest.send_job_token, settings.flower.password, settings.alerts.password):
        if s2 is not None:
            values.append(s2.get_secret_value())
    return [v for v in values if v and len(v) >= 4]


def redact(text: str, secrets: Iterable[str]) -> str:
    for s in secrets:
        if s in text:
            text = text.replace(s, REDACTED)
    if _NEEDS.search(text) is None:
        return text  # most log values (P1: three per webhook line)
    for pat in _PATTERNS:
        text = pat.sub(lambda m: m.group(1) + REDACTED, text)
    return text


class RedactingFilter(logging.Filter):
    """Scrubs secrets from the rendered message and every extra field (nested ones too: Celery
    logs dicts holding the exception text)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = sorted(set(secrets), key=len, reverse=True)

    def _scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            return redact(value, self.secrets)
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, dict):
            return {str(k): self._scrub(v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self._scrub(v) for v in value]
        # anything else would be rendered with str() later: render and scrub it now
        return redact(str(value), self.secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        record.msg = redact(msg, self.secrets)
        record.args = None
        for k, v in list(record.__dict__.items()):
            if k not in _STANDARD:
                setattr(record, k, self._scrub(v))
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(
                logging.Formatter().formatException(record.exc_info), self.secrets
            )
            record.exc_info = None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in record.__dict__.items():
            if k not in _STANDARD and not k.startswith("_"):
                out[k] = v
        if record.exc_text:
            out["exc"] = record.exc_text
        return json.dumps(out, default=str)


def _handlers() -> list[logging.Handler]:
    """The root logger's handlers and those of every logger that has its own."""
    out = list(logging.getLogger().handlers)
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger):
            out += [h for h in logger.handlers if h not in out]
    return out


def configure_logging(
    settings: Settings | None,
    *,
    level: int | None = logging.INFO,
    json_lines: bool | None = None,
) -> None:
    """Install the redacting filter and the formatter on every handler.

    ``settings`` None (they could not be loaded) still redacts tokens by pattern. ``level`` None
    keeps the level already set (Celery's ``--loglevel``).
    """
    root = logging.getLogger()
    if level is not None:
        root.setLevel(level)
    if not root.handlers:
        root.addHandler(logging.StreamHandler(sys.stderr))
    use_json = (not sys.stderr.isatty()) if json_lines is None else json_lines
    flt = RedactingFilter(secrets_of(settings) if settings is not None else [])
    for handler in _handlers():
        handler.filters = [f for f in handler.filters if not isinstance(f, RedactingFilter)]
        handler.addFilter(flt)
        handler.setFormatter(
            JsonFormatter()
            if use_json
            else logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
        )
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def celery_logging_hook(**_: Any) -> None:
    """Receiver of Celery's ``after_setup_logger``/``after_setup_task_logger``: a worker or Beat
    started by Celery itself gets the same redaction and JSON lines as ``stsync worker``."""
    settings: Settings | None
    try:
        from worker.settings import get_settings

        settings = get_settings()
    except Exception:  # noqa: BLE001 - no settings still means redacting by pattern
        settings = None
    configure_logging(settings, level=None)
