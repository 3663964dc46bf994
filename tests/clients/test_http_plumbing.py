"""The plumbing both clients share: the OAuth2 client-credentials ``httpx.Auth`` and the one
status -> error policy table (clients/http.py)."""

from __future__ import annotations

import base64
import json
import threading
import time

import httpx
import pytest
from freezegun import freeze_time

from clients.errors import (
    AmbiguousWriteError,
    AuthorizationError,
    NotFound,
    PermanentError,
    RateLimited,
    TransientError,
)
from clients.http import (
    STATUS_POLICY,
    CallRecord,
    Endpoint,
    Exchanger,
    OAuth2ClientCredentials,
    Redactor,
    Token,
    Verdict,
    status_error,
    token_from_answer,
    verdict,
)


class Issuer:
    """Hands out tok-1, tok-2, ... each valid for ``lifetime_s`` with ``margin_s`` early refresh."""

    def __init__(self, lifetime_s: float = 3600.0, margin_s: float = 300.0) -> None:
        self.issued: list[str] = []
        self.lifetime_s = lifetime_s
        self.margin_s = margin_s

    def __call__(self) -> Token:
        value = f"tok-{len(self.issued) + 1}"
        self.issued.append(value)
        return token_from_answer(
            {"access_token": value, "expires_in": self.lifetime_s},
            what="test token",
            margin_s=self.margin_s,
            default_lifetime_s=3600.0,
        )


class Server:
    """Answers with ``statuses`` in turn (then 200), recording the Authorization header seen."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.seen: list[str] = []
        self.bodies: list[bytes] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request.headers.get("authorization", ""))
        self.bodies.append(request.content)
        status = self.statuses.pop(0) if self.statuses else 200
        return httpx.Response(status, json={"ok": status == 200})


def client(server: Server) -> httpx.Client:
    return httpx.Client(base_url="https://api.test", transport=httpx.MockTransport(server))


# --- OAuth2ClientCredentials ---------------------------------------------------------------
def test_the_token_is_cached_across_requests() -> None:
    issuer, server = Issuer(), Server()
    auth = OAuth2ClientCredentials(issuer)
    with client(server) as http:
        for _ in range(3):
            assert http.get("/x", auth=auth).status_code == 200
    assert issuer.issued == ["tok-1"]
    assert server.seen == ["Bearer tok-1"] * 3


def test_the_token_is_refreshed_a_margin_before_it_expires() -> None:
    issuer, server = Issuer(lifetime_s=3600, margin_s=300), Server()
    auth = OAuth2ClientCredentials(issuer)
    with freeze_time("2026-01-01 00:00:00") as clock, client(server) as http:
        http.get("/x", auth=auth)
        clock.tick(3600 - 300 - 1)  # one second before the refresh point
        http.get("/x", auth=auth)
        assert issuer.issued == ["tok-1"]
        clock.tick(2)  # inside the margin: refreshed before it expires, without any 401
        http.get("/x", auth=auth)
    assert issuer.issued == ["tok-1", "tok-2"]
    assert server.seen == ["Bearer tok-1", "Bearer tok-1", "Bearer tok-2"]


def test_a_short_lived_token_is_refreshed_at_half_its_life() -> None:
    with freeze_time("2026-01-01 00:00:00"):
        token = token_from_answer(
            {"access_token": "t", "expires_in": 200},
            what="t",
            margin_s=300,
            default_lifetime_s=3600,
        )
        now = time.time()
    assert token.refresh_at == now + 100


def test_one_401_fetches_one_new_token_and_replays_once() -> None:
    issuer, server = Issuer(), Server(401)
    auth = OAuth2ClientCredentials(issuer)
    with client(server) as http:
        resp = http.post("/write", json={"n": 1}, auth=auth)
    assert resp.status_code == 200
    assert issuer.issued == ["tok-1", "tok-2"]
    assert server.seen == ["Bearer tok-1", "Bearer tok-2"]
    assert server.bodies[0] == server.bodies[1] == b'{"n":1}'  # the same request, replayed
    assert [r.status_code for r in resp.history] == [401]


def test_a_second_401_is_returned_not_looped_and_becomes_an_authorization_error() -> None:
    issuer, server = Issuer(), Server(401, 401, 401, 401)
    auth = OAuth2ClientCredentials(issuer)
    with client(server) as http:
        resp = http.get("/x", auth=auth)
    assert resp.status_code == 401
    assert issuer.issued == ["tok-1", "tok-2"]  # exactly one re-fetch
    assert len(server.seen) == 2  # exactly one replay
    err = status_error(resp, Endpoint.RECORDS, "GET /x: HTTP 401", write=False)
    assert isinstance(err, AuthorizationError) and "again after re-authenticating" in str(err)


def test_a_401_without_a_replay_is_an_authorization_error_too() -> None:
    resp = httpx.Response(401, request=httpx.Request("GET", "https://api.test/x"))
    err = status_error(resp, Endpoint.SERVICES, "POST /ws/X: HTTP 401", write=True)
    assert type(err) is AuthorizationError and "again" not in str(err)


def test_a_401_on_a_token_another_thread_already_replaced_fetches_nothing() -> None:
    issuer = Issuer()
    auth = OAuth2ClientCredentials(issuer)
    stale = auth.token()
    auth.invalidate(stale)
    fresh = auth.token()  # the other thread's new token
    auth.invalidate(stale)  # a late 401 for the old one
    assert auth.token() == fresh and issuer.issued == ["tok-1", "tok-2"]


def test_threads_share_one_token() -> None:
    issuer = Issuer()
    auth = OAuth2ClientCredentials(issuer)
    seen: list[str] = []
    threads = [threading.Thread(target=lambda: seen.append(auth.token())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == ["tok-1"] * 8 and issuer.issued == ["tok-1"]


def test_a_custom_apply_carries_a_session_cookie() -> None:
    server = Server()
    auth = OAuth2ClientCredentials(
        lambda: Token("sess-1"), apply=lambda r, t: r.headers.__setitem__("Cookie", f"S={t}")
    )
    with client(server) as http:
        req = http.build_request("GET", "/x")
        http.send(req, auth=auth)
    assert req.headers["cookie"] == "S=sess-1" and server.seen == [""]
    assert auth.cached() == "sess-1"


def test_token_expiry_from_the_jwt_exp_claim_when_asked() -> None:
    def jwt(exp: int) -> str:
        def part(d: dict[str, object]) -> str:
            return base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")

        return f"{part({'alg': 'none'})}.{part({'exp': exp})}.sig"

    with freeze_time("2026-01-01 00:00:00"):
        now = time.time()
        answer = {"access_token": jwt(int(now) + 1000), "expires_in": 86400}
        by_jwt = token_from_answer(
            answer, what="t", margin_s=300, default_lifetime_s=3600, use_jwt_exp=True
        )
        by_expires_in = token_from_answer(answer, what="t", margin_s=300, default_lifetime_s=3600)
        by_default = token_from_answer(
            {"access_token": "x"}, what="t", margin_s=300, default_lifetime_s=3600
        )
    assert by_jwt.refresh_at == now + 1000 - 300
    assert by_expires_in.refresh_at == now + 86400 - 300
    assert by_default.refresh_at == now + 3600 - 300
    with pytest.raises(TransientError, match="no access_token"):
        token_from_answer({"token_type": "Bearer"}, what="t", margin_s=1, default_lifetime_s=1)


def test_the_exchanger_reports_the_refused_401_and_the_replay() -> None:
    records: list[CallRecord] = []
    issuer, server = Issuer(), Server(401)
    auth = OAuth2ClientCredentials(issuer)
    with client(server) as http:
        wire = Exchanger(http, records.append, "test", Redactor())
        result = wire.send(
            "GET",
            "/x",
            what="GET /x",
            service="x",
            digest="d",
            write=False,
            classify=lambda r: r.status_code,
            auth=auth,
        )
    assert result == 200
    assert [(r.status, r.outcome) for r in records] == [(401, "error"), (200, "ok")]


# --- the status policy ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "records", "services", "token"),
    [
        (200, Verdict.OK, Verdict.OK, Verdict.OK),
        (204, Verdict.OK, Verdict.OK, Verdict.OK),
        (302, Verdict.REFUSED, Verdict.REFUSED, Verdict.REFUSED),
        (400, Verdict.REFUSED, Verdict.REFUSED, Verdict.DENIED),
        (401, Verdict.REAUTHENTICATE, Verdict.REAUTHENTICATE, Verdict.DENIED),
        (403, Verdict.DENIED, Verdict.DENIED, Verdict.DENIED),
        (404, Verdict.MISSING, Verdict.REFUSED, Verdict.REFUSED),
        (408, Verdict.SERVER, Verdict.SERVER, Verdict.SERVER),
        (409, Verdict.REFUSED, Verdict.REFUSED, Verdict.REFUSED),
        (422, Verdict.REFUSED, Verdict.REFUSED, Verdict.REFUSED),
        (429, Verdict.THROTTLED, Verdict.THROTTLED, Verdict.THROTTLED),
        (500, Verdict.SERVER, Verdict.SERVER, Verdict.SERVER),
        (503, Verdict.SERVER, Verdict.SERVER, Verdict.SERVER),
    ],
)
def test_the_policy_table(status: int, records: Verdict, services: Verdict, token: Verdict) -> None:
    assert (
        verdict(status, Endpoint.RECORDS),
        verdict(status, Endpoint.SERVICES),
        verdict(status, Endpoint.TOKEN),
    ) == (records, services, token)


def test_every_row_of_the_table_has_a_verdict_per_endpoint() -> None:
    assert all(len(row) == len(Endpoint) for row in STATUS_POLICY.values())
    assert {"2xx", "5xx", "other"} <= set(STATUS_POLICY)


def response(status: int, retry_after: str | None = None) -> httpx.Response:
    headers = {"Retry-After": retry_after} if retry_after else {}
    return httpx.Response(status, headers=headers, request=httpx.Request("GET", "https://a.test"))


def test_status_errors_by_verdict() -> None:
    def err(
        status: int,
        endpoint: Endpoint = Endpoint.RECORDS,
        *,
        write: bool = False,
        retry_after: str | None = None,
    ) -> Exception:
        return status_error(response(status, retry_after), endpoint, f"HTTP {status}", write=write)

    assert type(err(403)) is AuthorizationError
    assert type(err(404)) is NotFound
    assert type(err(404, Endpoint.SERVICES)) is PermanentError  # a wrong URL, not a missing record
    assert type(err(400, Endpoint.TOKEN)) is AuthorizationError
    assert type(err(422)) is PermanentError
    throttled = err(429, write=True, retry_after="7")
    # a 429 is its own kind of transient error: ServiceTrade's pauses the whole account
    assert type(throttled) is RateLimited and throttled.retry_after == 7.0
    read = err(503, retry_after="12")
    assert type(read) is TransientError and read.retry_after == 12.0
    assert err(503).retry_after is None  # type: ignore[attr-defined]
    assert type(err(503, write=True)) is AmbiguousWriteError
    # a write refused with a Retry-After still says when to come back (countdown >= it)
    assert err(503, write=True, retry_after="12").retry_after == 12.0  # type: ignore[attr-defined]
    assert type(err(408, write=True)) is AmbiguousWriteError
    with pytest.raises(ValueError, match="success"):
        err(200)
