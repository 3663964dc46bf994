"""Sandbox-only Spectrum state that Info-Link does not show: Authorization IDs, processing-date
windows, Enhanced-Auth clients and tokens, strict mode, GUID sessions — and the admin endpoints
(``/_sandbox/spectrum/...``) that change them at runtime.

Kept in memory: it is configuration of the simulated Spectrum install, not data stsync reads.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Literal

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field, field_validator

from clients.spectrum.formats import parse_date
from clients.spectrum.services import AR_MULTI_LINE_AUTH_NAME, SERVICES
from sandbox import credentials
from sandbox.spectrum import assumptions as assume

#: Every name an Authorization ID can be granted ("Build" button, reference §2).
ALL_SERVICE_NAMES: frozenset[str] = frozenset(SERVICES) | {AR_MULTI_LINE_AUTH_NAME}

#: Enhanced-Auth client the sandbox knows when Enhanced Auth is switched on without naming one.
DEFAULT_OAUTH_CLIENT_ID = "stsync-spectrum"
DEFAULT_OAUTH_CLIENT_SECRET = "demo-spectrum-secret-0000"  # noqa: S105 - loopback sandbox only

Module = Literal["AR", "PR"]


@dataclass
class Authorization:
    """One Authorization ID (System Administration > Installation > Data Exchange)."""

    authorization_id: str
    active: bool = True
    companies: list[str] = field(default_factory=list)
    services: set[str] = field(default_factory=set)

    @property
    def default_company(self) -> str:
        """Blank Company_Code defaults to the first company of the Authorization ID (§3)."""
        return self.companies[0] if self.companies else ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "authorization_id": self.authorization_id,
            "active": self.active,
            "companies": list(self.companies),
            "services": sorted(self.services),
        }


@dataclass(frozen=True)
class Window:
    """A processing-date window, inclusive."""

    start: date
    end: date

    def contains(self, d: date) -> bool:
        return self.start <= d <= self.end

    def describe(self) -> str:
        return f"{self.start:%m/%d/%Y} - {self.end:%m/%d/%Y}"


def default_authorizations() -> dict[str, Authorization]:
    """The Authorization IDs a fresh sandbox accepts (``sandbox.credentials``)."""
    auths = [
        Authorization(
            credentials.SPECTRUM_AUTHORIZATION_ID,
            True,
            [credentials.SPECTRUM_COMPANY],
            set(ALL_SERVICE_NAMES),
        ),
        Authorization(
            credentials.SPECTRUM_AUTHORIZATION_ID_2,
            True,
            [credentials.SPECTRUM_COMPANY_2],
            set(ALL_SERVICE_NAMES),
        ),
        Authorization(
            credentials.SPECTRUM_INACTIVE_AUTHORIZATION_ID,
            False,
            [credentials.SPECTRUM_COMPANY],
            set(ALL_SERVICE_NAMES),
        ),
    ]
    return {a.authorization_id: a for a in auths}


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class AdminState:
    """Everything about the simulated install that is not a table row."""

    strict_lengths: bool = False
    require_all_elements: bool = True
    clock: Callable[[], datetime] = _utcnow
    authorizations: dict[str, Authorization] = field(default_factory=default_authorizations)
    #: module -> company ("*" = every company without its own window) -> window (None: not set up)
    windows: dict[str, dict[str, Window | None]] = field(default_factory=dict)
    enhanced_auth: bool = False
    oauth_clients: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, datetime] = field(default_factory=dict)
    #: (service, GUID) -> (Authorization ID, last use)
    guids: OrderedDict[tuple[str, str], tuple[str, datetime]] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _initial: tuple[bool, bool] = field(default=(False, True), init=False)

    def __post_init__(self) -> None:
        self._initial = (self.strict_lengths, self.require_all_elements)
        if not self.windows:
            self.windows = _default_windows()
        if not self.oauth_clients:
            self.oauth_clients = {DEFAULT_OAUTH_CLIENT_ID: DEFAULT_OAUTH_CLIENT_SECRET}

    def reset(self) -> None:
        """Back to the state the app was created with."""
        with self._lock:
            self.strict_lengths, self.require_all_elements = self._initial
            self.authorizations = default_authorizations()
            self.windows = _default_windows()
            self.enhanced_auth = False
            self.oauth_clients = {DEFAULT_OAUTH_CLIENT_ID: DEFAULT_OAUTH_CLIENT_SECRET}
            self.tokens.clear()
            self.guids.clear()

    def now(self) -> datetime:
        return self.clock()

    def today(self) -> date:
        return self.clock().date()

    # --- authorization ----------------------------------------------------------------------

    def authorization(self, authorization_id: str) -> Authorization | None:
        return self.authorizations.get(authorization_id)

    def set_authorization(
        self,
        authorization_id: str,
        *,
        active: bool = True,
        companies: Iterable[str] = (),
        services: Iterable[str] | None = None,
    ) -> Authorization:
        """Create or replace an Authorization ID (``services=None``: every service)."""
        granted = set(ALL_SERVICE_NAMES if services is None else services)
        unknown = granted - ALL_SERVICE_NAMES
        if unknown:
            raise ValueError(f"unknown service(s): {', '.join(sorted(unknown))}")
        auth = Authorization(authorization_id, active, list(companies), granted)
        with self._lock:
            self.authorizations[authorization_id] = auth
        return auth

    def authorize(self, authorization_id: str, service: str, granted: bool = True) -> None:
        """Grant (or withdraw) one service on an existing Authorization ID."""
        if service not in ALL_SERVICE_NAMES:
            raise ValueError(f"unknown service {service!r}")
        auth = self._require(authorization_id)
        with self._lock:
            if granted:
                auth.services.add(service)
            else:
                auth.services.discard(service)

    def set_active(self, authorization_id: str, active: bool) -> None:
        self._require(authorization_id).active = active

    def _require(self, authorization_id: str) -> Authorization:
        auth = self.authorizations.get(authorization_id)
        if auth is None:
            raise KeyError(f"unknown Authorization ID {authorization_id!r}")
        return auth

    # --- processing windows -----------------------------------------------------------------

    def window(self, module: Module, company: str) -> Window | None:
        """The processing window of ``module`` for ``company`` (None: never set up)."""
        by_company = self.windows.get(module, {})
        if company in by_company:
            return by_company[company]
        return by_company.get("*")

    def set_window(self, module: Module, window: Window | None, company: str = "*") -> None:
        with self._lock:
            self.windows.setdefault(module, {})[company] = window

    # --- GUID sessions (§2) -----------------------------------------------------------------

    def use_guid(
        self, service: str, guid: str, authorization_id: str
    ) -> tuple[str, str, str] | None:
        """Register one use of ``guid``; the error row when it may not be used, else None."""
        if not guid:
            return None
        now = self.now()
        key = (service, guid)
        with self._lock:
            seen = self.guids.get(key)
            if seen is not None:
                owner, last = seen
                if owner != authorization_id:
                    return assume.GUID_OTHER_AUTH_ROW
                if now - last > assume.GUID_IDLE_EXPIRY:
                    return assume.GUID_TIMEOUT_ROW
                self.guids.move_to_end(key)
            self.guids[key] = (authorization_id, now)
            while len(self.guids) > assume.GUID_MEMORY:
                self.guids.popitem(last=False)
        return None

    # --- Enhanced Authentication (§2) -------------------------------------------------------

    def issue_token(self, client_id: str, client_secret: str) -> tuple[str, int] | None:
        """A new Bearer token and its lifetime in seconds, or None for a bad client."""
        expected = self.oauth_clients.get(client_id)
        if expected is None or not secrets.compare_digest(expected, client_secret):
            return None
        token = secrets.token_urlsafe(32)
        with self._lock:
            now = self.now()
            for t in [t for t, exp in self.tokens.items() if exp <= now]:
                del self.tokens[t]
            self.tokens[token] = now + assume.TOKEN_LIFETIME
        return token, int(assume.TOKEN_LIFETIME.total_seconds())

    def rotate_secret(self, client_id: str, client_secret: str) -> str | None:
        """§2 ``/secretRotation``: a new secret for a known client, or None."""
        expected = self.oauth_clients.get(client_id)
        if expected is None or not secrets.compare_digest(expected, client_secret):
            return None
        new = secrets.token_urlsafe(24)
        with self._lock:
            self.oauth_clients[client_id] = new
        return new

    def bearer_ok(self, authorization_header: str | None) -> bool:
        """True when Enhanced Auth is off, or the header carries a live token."""
        if not self.enhanced_auth:
            return True
        if not authorization_header:
            return False
        scheme, _, token = authorization_header.partition(" ")
        if scheme.lower() != "bearer":
            return False
        expiry = self.tokens.get(token.strip())
        return expiry is not None and expiry > self.now()

    def snapshot(self) -> dict[str, Any]:
        return {
            "strict_lengths": self.strict_lengths,
            "require_all_elements": self.require_all_elements,
            "enhanced_auth": self.enhanced_auth,
            "oauth_clients": sorted(self.oauth_clients),
            "authorizations": [a.as_dict() for a in self.authorizations.values()],
            "windows": {
                module: {co: _window_json(w) for co, w in by_co.items()}
                for module, by_co in self.windows.items()
            },
        }


def _window_json(w: Window | None) -> dict[str, str] | None:
    return None if w is None else {"start": w.start.isoformat(), "end": w.end.isoformat()}


def _default_windows() -> dict[str, dict[str, Window | None]]:
    start, end = assume.DEFAULT_WINDOW
    return {"AR": {"*": Window(start, end)}, "PR": {"*": Window(start, end)}}


# --- admin endpoints ------------------------------------------------------------------------------


def _as_date(value: str | date) -> date:
    if isinstance(value, date):
        return value
    return date.fromisoformat(value) if "-" in value[:5] else parse_date(value)


class AuthorizationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    active: bool = True
    companies: list[str] = Field(min_length=1)
    #: None: every service
    services: list[str] | None = None


class WindowIn(BaseModel):
    """A processing window; ``start``/``end`` null clears it (processing dates not set up)."""

    model_config = ConfigDict(extra="forbid")

    start: date | None = None
    end: date | None = None
    company: str = "*"

    @field_validator("start", "end", mode="before")
    @classmethod
    def _date(cls, v: Any) -> Any:
        return _as_date(v) if isinstance(v, str) else v


class ModesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    strict_lengths: bool | None = None
    require_all_elements: bool | None = None


class EnhancedAuthIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool
    #: client id -> secret; None keeps the known clients
    clients: dict[str, str] | None = None


def admin_router(state: AdminState) -> APIRouter:
    """``/_sandbox/spectrum/...``: Authorization IDs, processing windows, modes, Enhanced Auth."""
    router = APIRouter(prefix="/_sandbox/spectrum", tags=["sandbox"])

    @router.get("/state")
    def get_state() -> dict[str, Any]:
        return state.snapshot()

    @router.put("/authorizations/{authorization_id}")
    def put_authorization(authorization_id: str, body: AuthorizationIn) -> dict[str, Any]:
        try:
            auth = state.set_authorization(
                authorization_id,
                active=body.active,
                companies=body.companies,
                services=body.services,
            )
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
        return auth.as_dict()

    @router.put("/authorizations/{authorization_id}/active/{active}")
    def put_active(authorization_id: str, active: bool) -> dict[str, Any]:
        try:
            state.set_active(authorization_id, active)
        except KeyError as exc:
            raise HTTPException(404, str(exc)) from exc
        return state.authorizations[authorization_id].as_dict()

    @router.post("/authorizations/{authorization_id}/services/{service}")
    def authorize(authorization_id: str, service: str) -> dict[str, Any]:
        return _grant(authorization_id, service, True)

    @router.delete("/authorizations/{authorization_id}/services/{service}")
    def unauthorize(authorization_id: str, service: str) -> dict[str, Any]:
        return _grant(authorization_id, service, False)

    def _grant(authorization_id: str, service: str, granted: bool) -> dict[str, Any]:
        try:
            state.authorize(authorization_id, service, granted)
        except KeyError as exc:
            raise HTTPException(404, str(exc)) from exc
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
        return state.authorizations[authorization_id].as_dict()

    @router.put("/windows/{module}")
    def put_window(module: Module, body: WindowIn) -> dict[str, Any]:
        if (body.start is None) != (body.end is None):
            raise HTTPException(422, "give both start and end, or neither (not set up)")
        if body.start is not None and body.end is not None and body.start > body.end:
            raise HTTPException(422, "start is after end")
        window = None if body.start is None or body.end is None else Window(body.start, body.end)
        state.set_window(module, window, body.company)
        return state.snapshot()["windows"]  # type: ignore[no-any-return]

    @router.put("/modes")
    def put_modes(body: ModesIn) -> dict[str, Any]:
        if body.strict_lengths is not None:
            state.strict_lengths = body.strict_lengths
        if body.require_all_elements is not None:
            state.require_all_elements = body.require_all_elements
        return {
            "strict_lengths": state.strict_lengths,
            "require_all_elements": state.require_all_elements,
        }

    @router.put("/enhanced-auth")
    def put_enhanced_auth(body: EnhancedAuthIn) -> dict[str, Any]:
        state.enhanced_auth = body.enabled
        if body.clients is not None:
            state.oauth_clients = dict(body.clients)
        if not body.enabled:
            state.tokens.clear()
        return {"enabled": state.enhanced_auth, "clients": sorted(state.oauth_clients)}

    return router
