"""Structured logs with secrets redacted at one choke point (F16, R3).

JSON lines when stderr is not a terminal, readable text otherwise. The redaction filter replaces
every configured secret (webhook secret, Authorization IDs, client secrets, passwords) and anything
that looks like a bearer token or a PHPSESSID with ``[REDACTED]`` in the message, the arguments and
the extra fields, on every handler of the root logger.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from worker.settings import Settings

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
_PATTERNS = [
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"(?i)(phpsessid=)[^;\s]+"),
    re.compile(r"(?i)(authorization_id>)[^<]+"),
    re.compile(r"(/webhooks/servicetrade/)[^/\s?\"']+"),
]
REDACTED = "[REDACTED]"


def secrets_of(settings: Settings) -> list[str]:
    """Every secret value in the settings (to be scrubbed from logs)."""
    values: list[str] = [settings.webhook_secret.get_secret_value()]
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
    for pat in _PATTERNS:
        text = pat.sub(lambda m: m.group(1) + REDACTED, text)
    return text


class RedactingFilter(logging.Filter):
    """Scrubs secrets from the rendered message and every extra field."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = sorted(set(secrets), key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        record.msg = redact(msg, self.secrets)
        record.args = None
        for k, v in list(record.__dict__.items()):
            if k not in _STANDARD and isinstance(v, str):
                setattr(record, k, redact(v, self.secrets))
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


def configure_logging(
    settings: Settings, *, level: int = logging.INFO, json_lines: bool | None = None
) -> None:
    """Install the redacting filter and the formatter on the root logger."""
    root = logging.getLogger()
    root.setLevel(level)
    if not root.handlers:
        root.addHandler(logging.StreamHandler(sys.stderr))
    use_json = (not sys.stderr.isatty()) if json_lines is None else json_lines
    flt = RedactingFilter(secrets_of(settings))
    for handler in root.handlers:
        handler.filters = [f for f in handler.filters if not isinstance(f, RedactingFilter)]
        handler.addFilter(flt)
        handler.setFormatter(
            JsonFormatter()
            if use_json
            else logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
        )
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
