"""Fault, latency and observation knobs shared by both simulators (F18).

Each simulator owns one ``FaultInjector``. Before serving a call it asks ``decide(service)`` what to
do; after serving it records the call. Tests and benchmarks change the knobs at start-up
(``FaultConfig``) or at runtime through the admin router (``/_sandbox/...``), and read call counters
and the request log from it.

Outcomes:
- ``ok``       serve normally
- ``error``    refuse with a server error *before* doing anything (ServiceTrade 503,
               Spectrum HTTP 500 + SOAP fault "Error executing Web Service")
- ``rate_limit`` 429 with ``Retry-After`` (ServiceTrade only)
- ``ghost``    perform the write, commit it, then answer as ``error``: the caller cannot know
               that it landed
- ``timeout``  perform the write, then hold the answer for ``timeout_hold_s`` before answering as
               ``error``, so a client with a shorter read timeout gives up

Knobs for recovery tests (issues 13, 17): ``outage`` answers every faultable call as ``error``
(the system is down: ServiceTrade 503, Spectrum "Error executing Web Service") until it is turned
off; ``error_retry_after_s`` adds ``Retry-After`` to those server errors (a 503 that says when to
come back); ``retry_after_s`` is the ``Retry-After`` of a 429.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi import APIRouter, Body
from pydantic import BaseModel, ConfigDict, Field

Outcome = Literal["ok", "error", "rate_limit", "ghost", "timeout"]
OUTCOMES: tuple[Outcome, ...] = ("ok", "error", "rate_limit", "ghost", "timeout")


class FaultConfig(BaseModel):
    """Knobs of one simulator. Rates are probabilities in [0, 1] drawn per call."""

    model_config = ConfigDict(extra="forbid")

    latency_ms: float = Field(default=0.0, ge=0)
    jitter_ms: float = Field(default=0.0, ge=0)
    error_rate: float = Field(default=0.0, ge=0, le=1)
    rate_limit_rate: float = Field(default=0.0, ge=0, le=1)
    ghost_write_rate: float = Field(default=0.0, ge=0, le=1)
    timeout_rate: float = Field(default=0.0, ge=0, le=1)
    timeout_hold_s: float = Field(default=6.0, ge=0)
    retry_after_s: int = Field(default=1, ge=0)
    #: the whole system is down: every faultable call is answered as ``error`` (scripts first)
    outage: bool = False
    #: server errors (``error`` outcomes) carry ``Retry-After: <this>`` when set
    error_retry_after_s: int | None = Field(default=None, ge=0)
    #: only these services / resources are faulted (empty: all). Reads are never ghosted.
    services: list[str] = Field(default_factory=list)
    #: webhook delivery: each delivery is sent between 1 and this many times
    webhook_duplicates_max: int = Field(default=1, ge=1, le=10)
    #: webhook delivery: shuffle the order of pending deliveries
    webhook_reorder: bool = False
    #: webhook delivery: probability that a delivery is dropped outright (never sent)
    webhook_drop_rate: float = Field(default=0.0, ge=0, le=1)
    #: Spectrum: cut large Get responses after the last ``</response>``
    truncate_envelope: bool = False
    #: Spectrum: cap Get rows and append a ``W`` row ("exceeds maximum")
    row_cap: int | None = Field(default=None, ge=1)
    #: seed for the fault dice (None: nondeterministic)
    seed: int | None = None


def request_path(scope: Mapping[str, Any], *, with_query: bool = False) -> str:
    """``request.url.path`` (plus ``?query`` when asked and present) read straight from the ASGI
    scope: building ``request.url`` parses the Host header and re-splits the whole URL on every
    recorded call, for two fields the scope already holds."""
    path: str = scope["path"].replace("?", "%3F").replace("#", "%23").replace("\\", "%5C")
    query: bytes = scope.get("query_string", b"")
    return f"{path}?{query.decode()}" if with_query and query else path


@dataclass
class RequestRecord:
    """One served call, as the request log keeps it."""

    at: float
    service: str
    method: str
    path: str
    body: str
    status: int
    outcome: str
    duration_ms: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "service": self.service,
            "method": self.method,
            "path": self.path,
            "body": self.body,
            "status": self.status,
            "outcome": self.outcome,
            "duration_ms": round(self.duration_ms, 3),
        }


@dataclass
class FaultInjector:
    """Decides each call's fate and keeps counters and a bounded request log."""

    config: FaultConfig = field(default_factory=FaultConfig)
    log_size: int = 20_000
    _rng: random.Random = field(default_factory=random.Random)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _scripts: dict[str, deque[Outcome]] = field(default_factory=dict)
    _holds: dict[str, tuple[Outcome, int]] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    log: deque[RequestRecord] = field(default_factory=deque)

    def __post_init__(self) -> None:
        self.configure(self.config)

    def configure(self, config: FaultConfig) -> None:
        """Replace the knobs (and reseed the dice when a seed is given)."""
        with self._lock:
            self.config = config
            if config.seed is not None:
                self._rng.seed(config.seed)

    def script(self, service: str, outcomes: list[Outcome]) -> None:
        """Force the next calls of ``service`` to these outcomes, in order, before any dice."""
        with self._lock:
            self._scripts.setdefault(service, deque()).extend(outcomes)

    def hold(self, service: str, outcome: Outcome, limit: int) -> None:
        """Serve the next ``limit`` calls of ``service`` as ``outcome``, ahead of the dice, until
        ``release(service)``. Unlike ``script``, an ``outage`` comes first: while the system is
        down its calls still fail, so a hold armed before an outage ends takes the first calls
        that reach the system after it, with no gap between."""
        with self._lock:
            self._holds[service] = (outcome, limit)

    def release(self, service: str) -> None:
        """End a ``hold`` of ``service``."""
        with self._lock:
            self._holds.pop(service, None)

    def reset(self) -> None:
        """Clear counters, the log, scripts and holds; knobs go back to defaults."""
        with self._lock:
            self.calls.clear()
            self.outcomes.clear()
            self.log.clear()
            self._scripts.clear()
            self._holds.clear()
            self.config = FaultConfig()

    def applies_to(self, service: str) -> bool:
        return not self.config.services or service in self.config.services

    def decide(self, service: str, *, is_write: bool) -> Outcome:
        """The outcome for this call of ``service``."""
        with self._lock:
            script = self._scripts.get(service)
            if script:
                return script.popleft()
            held = self._holds.get(service)
            if held is None or (self.config.outage and self.applies_to(service)):
                return self._roll(service, is_write)
            outcome, left = held
            if left <= 1:
                del self._holds[service]
            else:
                self._holds[service] = (outcome, left - 1)
            return outcome

    def _roll(self, service: str, is_write: bool) -> Outcome:
        """The knobs' outcome for a call (the caller holds the lock)."""
        cfg = self.config
        if not self.applies_to(service):
            return "ok"
        if cfg.outage:
            return "error"
        roll = self._rng.random()
        for outcome, rate in (
            ("error", cfg.error_rate),
            ("rate_limit", cfg.rate_limit_rate),
            ("ghost", cfg.ghost_write_rate if is_write else 0.0),
            ("timeout", cfg.timeout_rate if is_write else 0.0),
        ):
            if roll < rate:
                return outcome  # type: ignore[return-value]
            roll -= rate
        return "ok"

    def set_outage(self, down: bool) -> None:
        """Take the simulated system down (every faultable call an ``error``) or bring it back."""
        with self._lock:
            self.config = self.config.model_copy(update={"outage": down})

    def error_headers(self) -> dict[str, str]:
        """Headers of an ``error`` answer (``Retry-After`` when the knob is set)."""
        after = self.config.error_retry_after_s
        return {} if after is None else {"Retry-After": str(after)}

    def latency_s(self) -> float:
        cfg = self.config
        if not cfg.latency_ms and not cfg.jitter_ms:
            return 0.0
        with self._lock:
            jitter = self._rng.uniform(0, cfg.jitter_ms) if cfg.jitter_ms else 0.0
        return (cfg.latency_ms + jitter) / 1000.0

    async def delay(self) -> None:
        """Sleep the configured latency (no-op when none)."""
        seconds = self.latency_s()
        if seconds:
            await asyncio.sleep(seconds)

    def record(self, rec: RequestRecord) -> None:
        with self._lock:
            self.calls[rec.service] += 1
            self.outcomes[f"{rec.service}:{rec.outcome}"] += 1
            self.log.append(rec)
            while len(self.log) > self.log_size:
                self.log.popleft()

    def requests(self, service: str | None = None, since: float = 0.0) -> list[RequestRecord]:
        with self._lock:
            return [
                r for r in self.log if (service is None or r.service == service) and r.at >= since
            ]

    def dice(self) -> random.Random:
        """The injector's random source (webhook duplication and reordering use it too)."""
        return self._rng


def now() -> float:
    return time.time()


def admin_router(injector: FaultInjector, reset_state: Callable[[], None]) -> APIRouter:
    """``/_sandbox`` endpoints: knobs, scripts, counters, request log, reset."""
    router = APIRouter(prefix="/_sandbox", tags=["sandbox"])

    @router.get("/faults")
    def get_faults() -> dict[str, Any]:
        return injector.config.model_dump()

    @router.put("/faults")
    def put_faults(config: FaultConfig) -> dict[str, Any]:
        injector.configure(config)
        return injector.config.model_dump()

    @router.post("/script/{service}")
    def post_script(service: str, outcomes: list[Outcome] = Body(...)) -> dict[str, Any]:  # noqa: B008
        injector.script(service, outcomes)
        return {"service": service, "queued": len(outcomes)}

    @router.get("/counters")
    def get_counters() -> dict[str, Any]:
        return {"calls": dict(injector.calls), "outcomes": dict(injector.outcomes)}

    @router.get("/requests")
    def get_requests(service: str | None = None, since: float = 0.0) -> list[dict[str, Any]]:
        return [r.as_dict() for r in injector.requests(service, since)]

    @router.post("/reset")
    def post_reset() -> dict[str, str]:
        injector.reset()
        reset_state()
        return {"status": "reset"}

    return router
