"""OAuth2 tokens and legacy PHPSESSID sessions of the simulator (reference §1).

Access tokens are JWT-shaped (base64url ``header.payload.signature``, HS256 with a random
per-process key) because the SDKs read ``exp`` from them; the server still checks them against its
own table, so a revoked or expired token stops working at once. Refresh tokens are opaque and
rotate on every use. Sessions are capped per user, oldest evicted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sandbox import credentials
from sandbox.servicetrade import assumptions

#: purge expired entries once a table grows past this many
_PURGE_AT = 10_000


@dataclass(frozen=True)
class Principal:
    """Who is calling: the API login behind a token or a session."""

    kind: str  # "token" | "session"
    username: str
    client_id: str | None


@dataclass
class _Access:
    principal: Principal
    expires_at: float
    refresh_token: str | None


@dataclass
class _Refresh:
    principal: Principal
    expires_at: float


@dataclass
class _Session:
    principal: Principal
    expires_at: float
    created_at: float


class OAuthError(Exception):
    """An OAuth-style failure: ``{"error": code, "error_description": description}``."""

    def __init__(self, status: int, code: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.code = code
        self.description = description

    def body(self) -> dict[str, str]:
        return {"error": self.code, "error_description": self.description}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class AuthStore:
    """Tokens, refresh tokens and sessions; thread-safe."""

    def __init__(
        self,
        *,
        token_ttl_s: float = assumptions.TOKEN_TTL_S,
        session_ttl_s: float = assumptions.SESSION_TTL_S,
        refresh_ttl_s: float = assumptions.REFRESH_TOKEN_TTL_S,
        max_sessions: int = assumptions.MAX_SESSIONS_PER_USER,
        issuer: str = "http://127.0.0.1:8801",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.token_ttl_s = token_ttl_s
        self.session_ttl_s = session_ttl_s
        self.refresh_ttl_s = refresh_ttl_s
        self.max_sessions = max_sessions
        self.issuer = issuer
        self.clock = clock
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._access: dict[str, _Access] = {}
        self._refresh: dict[str, _Refresh] = {}
        self._sessions: OrderedDict[str, _Session] = OrderedDict()
        #: counters for tests: grants issued per grant type, logins, rejected credentials
        self.counters: dict[str, int] = {}

    # --- OAuth2 ---------------------------------------------------------------------------------
    def grant(self, form: Mapping[str, Any]) -> dict[str, Any]:
        """Answer ``POST /oauth2/token``; ``OAuthError`` for bad grants or credentials."""
        grant_type = str(form.get("grant_type") or "")
        if grant_type == "client_credentials":
            client_id = str(form.get("client_id") or "")
            secret = str(form.get("client_secret") or "")
            if not (
                _same(client_id, credentials.ST_CLIENT_ID)
                and _same(secret, credentials.ST_CLIENT_SECRET)
            ):
                self._count("rejected")
                raise OAuthError(401, "invalid_grant", "Invalid client credentials")
            principal = Principal("token", credentials.ST_USERNAME, client_id)
        elif grant_type == "password":
            username = str(form.get("username") or "")
            password = str(form.get("password") or "")
            if not (
                _same(username.lower(), credentials.ST_USERNAME.lower())
                and _same(password, credentials.ST_PASSWORD)
            ):
                self._count("rejected")
                raise OAuthError(401, "invalid_grant", "Invalid username or password")
            client_id_raw = form.get("client_id")
            principal = Principal(
                "token", credentials.ST_USERNAME, str(client_id_raw) if client_id_raw else None
            )
        elif grant_type == "refresh_token":
            token = str(form.get("refresh_token") or "")
            client_id = str(form.get("client_id") or "")
            with self._lock:
                entry = self._refresh.get(token)
                valid = (
                    entry is not None
                    and entry.expires_at > self.clock()
                    and (
                        entry.principal.client_id is None
                        or _same(client_id, entry.principal.client_id)
                    )
                )
                if entry is not None and valid:
                    # rotation: a refresh token works once
                    del self._refresh[token]
            if entry is None or not valid:
                self._count("rejected")
                raise OAuthError(401, "invalid_grant", "Invalid or expired refresh token")
            principal = entry.principal
        elif not grant_type:
            raise OAuthError(400, "invalid_request", "grant_type is required")
        else:
            raise OAuthError(
                400, "unsupported_grant_type", f"Unsupported grant_type {grant_type!r}"
            )
        self._count(grant_type)
        return self._issue(principal)

    def _issue(self, principal: Principal) -> dict[str, Any]:
        now = self.clock()
        ttl = int(self.token_ttl_s)
        access = self._jwt(principal, now, now + ttl)
        refresh = secrets.token_urlsafe(32)
        with self._lock:
            self._purge(now)
            self._refresh[refresh] = _Refresh(principal, now + self.refresh_ttl_s)
            self._access[access] = _Access(principal, now + ttl, refresh)
        return {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": ttl,
            "refresh_token": refresh,
        }

    def _jwt(self, principal: Principal, iat: float, exp: float) -> str:
        header = {"alg": assumptions.JWT_ALGORITHM, "typ": "JWT"}
        payload = {
            "iss": self.issuer,
            "sub": principal.username,
            "client_id": principal.client_id,
            "iat": int(iat),
            "exp": int(exp),
            "jti": secrets.token_hex(8),
        }
        signing_input = (
            _b64url(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + _b64url(json.dumps(payload, separators=(",", ":")).encode())
        )
        signature = hmac.new(self._key, signing_input.encode("ascii"), hashlib.sha256).digest()
        return signing_input + "." + _b64url(signature)

    def bearer(self, token: str) -> Principal | None:
        """The principal of a live access token, else None."""
        with self._lock:
            entry = self._access.get(token)
            if entry is None:
                return None
            if entry.expires_at <= self.clock():
                del self._access[token]
                return None
            return entry.principal

    def revoke(self, form: Mapping[str, Any]) -> None:
        """``POST /oauth2/revoke``: forget the named token (refresh or access) and the access tokens
        issued with that refresh token. Unknown tokens are ignored (logout never fails)."""
        token = str(form.get("refresh_token") or form.get("token") or "")
        if not token:
            return
        with self._lock:
            self._refresh.pop(token, None)
            entry = self._access.pop(token, None)
            if entry is not None and entry.refresh_token:
                self._refresh.pop(entry.refresh_token, None)
            for key in [k for k, v in self._access.items() if v.refresh_token == token]:
                del self._access[key]

    # --- legacy sessions ------------------------------------------------------------------------
    def login(self, username: str, password: str) -> str | None:
        """``POST /auth``: a new session id, or None for bad credentials (→ 403)."""
        if not (
            _same(username.lower(), credentials.ST_USERNAME.lower())
            and _same(password, credentials.ST_PASSWORD)
        ):
            self._count("rejected")
            return None
        now = self.clock()
        sid = secrets.token_hex(16)
        principal = Principal("session", credentials.ST_USERNAME, None)
        with self._lock:
            self._purge(now)
            self._sessions[sid] = _Session(principal, now + self.session_ttl_s, now)
            mine = [
                k for k, v in self._sessions.items() if v.principal.username == principal.username
            ]
            # help center: a user holds a limited number of sessions; the oldest are deleted
            for old in mine[: max(0, len(mine) - self.max_sessions)]:
                del self._sessions[old]
        self._count("session")
        return sid

    def session(self, sid: str) -> Principal | None:
        with self._lock:
            entry = self._sessions.get(sid)
            if entry is None:
                return None
            if entry.expires_at <= self.clock():
                del self._sessions[sid]
                return None
            return entry.principal

    def logout(self, sid: str) -> bool:
        with self._lock:
            return self._sessions.pop(sid, None) is not None

    # --- test controls --------------------------------------------------------------------------
    def expire_all(self) -> int:
        """Expire every access token and session now (refresh tokens stay valid); how many."""
        with self._lock:
            n = len(self._access) + len(self._sessions)
            self._access.clear()
            self._sessions.clear()
            return n

    def reset(self) -> None:
        with self._lock:
            self._access.clear()
            self._refresh.clear()
            self._sessions.clear()
            self.counters.clear()

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "token_ttl_s": self.token_ttl_s,
                "session_ttl_s": self.session_ttl_s,
                "access_tokens": len(self._access),
                "refresh_tokens": len(self._refresh),
                "sessions": len(self._sessions),
                "counters": dict(self.counters),
            }

    def _count(self, key: str) -> None:
        with self._lock:
            self.counters[key] = self.counters.get(key, 0) + 1

    def _purge(self, now: float) -> None:
        # caller holds the lock
        if len(self._access) > _PURGE_AT:
            for key in [k for k, v in self._access.items() if v.expires_at <= now]:
                del self._access[key]
        if len(self._refresh) > _PURGE_AT:
            for key in [k for k, v in self._refresh.items() if v.expires_at <= now]:
                del self._refresh[key]
        if len(self._sessions) > _PURGE_AT:
            for key in [k for k, v in self._sessions.items() if v.expires_at <= now]:
                del self._sessions[key]


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def jwt_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT-shaped token (no signature check): what a client reads ``exp`` from."""
    payload = token.split(".")[1]
    padded = payload + "=" * (-len(payload) % 4)
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(padded))
    return claims
