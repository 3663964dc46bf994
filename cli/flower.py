"""Flower as stsync runs it: ``python -m cli.flower <celery arguments>``.

Flower 2.2 checks its basic auth on every page and API call except ``/metrics`` (the Prometheus
endpoint has no authentication of its own). This runner puts ``/metrics`` behind the same login
before handing over to ``celery ... flower``; ``/healthcheck`` stays open for the container
healthcheck (it answers "OK" and nothing else). A Prometheus scrape job passes the same user and
password (``basic_auth`` in its scrape config; docs/operations.md).
"""

from __future__ import annotations

import sys
from typing import Any


def protect_metrics() -> None:
    """Require Flower's login for ``/metrics`` (idempotent)."""
    import tornado.web
    from flower.views.monitor import Metrics

    if getattr(Metrics.get, "_stsync_login", False):
        return
    guarded: Any = tornado.web.authenticated(Metrics.get)
    guarded._stsync_login = True
    Metrics.get = guarded


def main(argv: list[str]) -> int:
    protect_metrics()
    from celery.bin.celery import main as celery_main

    sys.argv = ["celery", *argv]
    code: Any = celery_main()
    return int(code or 0)


if __name__ == "__main__":  # pragma: no cover - the child process of `stsync flower`
    raise SystemExit(main(sys.argv[1:]))
