"""Serving the ingest: one uvicorn process by default, or several (``stsync ingest --workers N``).

One process answers ~2,700 single-event deliveries/s (p99 ~6 ms) and ~18,000 events/s in
100-event deliveries on the project's 2-core machine (docs/performance.md, P1), bound by its
per-request CPU in one interpreter; more processes share the port (uvicorn's supervisor) where
there are cores for them. Each process builds its own app from the environment
(``app_from_environment``): the parent passes the configuration path and the resolved broker URL
down, so an embedded broker is started once.
"""

from __future__ import annotations

import os

from fastapi import FastAPI

from worker.settings import Settings, load_settings


def app_from_environment() -> FastAPI:
    """The ingest app of ``STSYNC_CONFIG`` and the environment (a uvicorn worker process)."""
    from ingest.app import create_ingest_app
    from worker.celery_app import configure
    from worker.logs import configure_logging

    settings = load_settings()
    configure(settings)
    configure_logging(settings)
    return create_ingest_app(settings)


def serve_ingest(settings: Settings, host: str, port: int, *, workers: int = 1) -> None:
    """Run the ingest until stopped (access log off: the secret is in the path). The Celery app
    must be configured for ``settings`` already (the broker URL resolved)."""
    import uvicorn

    if workers <= 1:
        from ingest.app import create_ingest_app

        # log_config=None: uvicorn's loggers propagate to the root handlers, which redact
        uvicorn.run(
            create_ingest_app(settings),
            host=host,
            port=port,
            access_log=False,
            log_level="warning",
            log_config=None,
        )
        return
    from worker.celery_app import app as celery_app

    if settings.config_path:
        os.environ["STSYNC_CONFIG"] = settings.config_path
    os.environ["BROKER_URL"] = str(celery_app.conf.broker_url)
    uvicorn.run(
        "ingest.serve:app_from_environment",
        factory=True,
        workers=workers,
        host=host,
        port=port,
        access_log=False,
        log_level="warning",
        log_config=None,
    )
