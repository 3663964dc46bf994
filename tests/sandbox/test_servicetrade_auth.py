"""ServiceTrade simulator: OAuth2 grants, token lifetime, revoke and legacy sessions (reference §1)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from sandbox import credentials
from tests.sandbox.test_servicetrade_support import (
    API_USER,
    JOB,
    T0,
    Sim,
    client_credentials,
    make_sim,
)


@pytest.fixture
def sim() -> Iterator[Sim]:
    s, close = make_sim()
    yield s
    close()


def _claims(token: str) -> dict[str, Any]:
    header, payload, signature = token.split(".")
    assert header and signature
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize("path", ["/api/oauth2/token", "/oauth2/token"])
def test_client_credentials_form_body_on_both_paths(sim: Sim, path: str) -> None:
    body = client_credentials(sim.client, path)
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 86400
    assert body["refresh_token"]
    # §1a: the access token is a JWT whose exp the SDKs read
    assert _claims(body["access_token"])["exp"] == T0 + 86400
    response = sim.client.get(f"/api/job/{JOB}", headers=_bearer(body["access_token"]))
    assert response.status_code == 200


def test_client_credentials_json_body(sim: Sim) -> None:
    response = sim.client.post(
        "/api/oauth2/token",
        json={
            "grant_type": "client_credentials",
            "client_id": credentials.ST_CLIENT_ID,
            "client_secret": credentials.ST_CLIENT_SECRET,
        },
    )
    assert response.status_code == 200
    assert response.json()["token_type"] == "Bearer"


def test_password_grant(sim: Sim) -> None:
    response = sim.client.post(
        "/api/oauth2/token",
        data={
            "grant_type": "password",
            "username": credentials.ST_USERNAME,
            "password": credentials.ST_PASSWORD,
        },
    )
    assert response.status_code == 200
    token = response.json()["access_token"]
    assert sim.client.get("/api/company", headers=_bearer(token)).status_code == 200


@pytest.mark.parametrize(
    "form",
    [
        {
            "grant_type": "client_credentials",
            "client_id": credentials.ST_CLIENT_ID,
            "client_secret": "wrong",
        },
        {
            "grant_type": "client_credentials",
            "client_id": "nobody",
            "client_secret": credentials.ST_CLIENT_SECRET,
        },
        {"grant_type": "password", "username": credentials.ST_USERNAME, "password": "wrong"},
        {
            "grant_type": "refresh_token",
            "refresh_token": "never-issued",
            "client_id": credentials.ST_CLIENT_ID,
        },
    ],
)
def test_bad_credentials_are_401_invalid_grant(sim: Sim, form: dict[str, str]) -> None:
    response = sim.client.post("/api/oauth2/token", data=form)
    assert response.status_code == 401
    body = response.json()
    assert body["error"] == "invalid_grant"
    assert body["error_description"]


def test_unsupported_grant_is_400(sim: Sim) -> None:
    response = sim.client.post("/api/oauth2/token", data={"grant_type": "implicit"})
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


def test_refresh_rotates_and_old_refresh_token_stops_working(sim: Sim) -> None:
    first = client_credentials(sim.client)
    form = {
        "grant_type": "refresh_token",
        "refresh_token": first["refresh_token"],
        "client_id": credentials.ST_CLIENT_ID,
    }
    second = sim.client.post("/api/oauth2/token", data=form)
    assert second.status_code == 200
    new = second.json()
    assert new["refresh_token"] != first["refresh_token"]
    assert new["access_token"] != first["access_token"]
    assert sim.client.get("/api/company", headers=_bearer(new["access_token"])).status_code == 200
    # the used refresh token is spent
    again = sim.client.post("/api/oauth2/token", data=form)
    assert again.status_code == 401
    assert again.json()["error"] == "invalid_grant"
    # and the new one works once
    form["refresh_token"] = new["refresh_token"]
    assert sim.client.post("/api/oauth2/token", data=form).status_code == 200


def test_refresh_with_another_client_id_is_refused(sim: Sim) -> None:
    first = client_credentials(sim.client)
    response = sim.client.post(
        "/api/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": first["refresh_token"],
            "client_id": "someone-else",
        },
    )
    assert response.status_code == 401


def test_revoke_ends_refresh_token_and_its_access_tokens(sim: Sim) -> None:
    tokens = client_credentials(sim.client)
    response = sim.client.post(
        "/api/oauth2/revoke",
        data={
            "refresh_token": tokens["refresh_token"],
            "client_id": credentials.ST_CLIENT_ID,
            "client_secret": credentials.ST_CLIENT_SECRET,
        },
    )
    assert response.status_code == 200
    assert (
        sim.client.get("/api/company", headers=_bearer(tokens["access_token"])).status_code == 401
    )
    refresh = sim.client.post(
        "/api/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": credentials.ST_CLIENT_ID,
        },
    )
    assert refresh.status_code == 401
    # py-sdk sends "token"; unknown tokens are ignored (logout never fails)
    assert sim.client.post("/oauth2/revoke", data={"token": "unknown"}).status_code == 200


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic abc"}]
)
def test_missing_or_bad_token_is_401_envelope(sim: Sim, headers: dict[str, str]) -> None:
    fresh = TestClient(sim.app)
    response = fresh.get(f"/api/job/{JOB}", headers=headers)
    assert response.status_code == 401
    body = response.json()
    assert body["data"] is None
    assert body["messages"]["error"]


def test_expired_token_is_401_and_a_new_grant_works(sim: Sim) -> None:
    tokens = client_credentials(sim.client)
    headers = _bearer(tokens["access_token"])
    sim.clock.advance(86400 - 1)
    assert sim.client.get("/api/company", headers=headers).status_code == 200
    sim.clock.advance(2)
    assert sim.client.get("/api/company", headers=headers).status_code == 401
    # the refresh token outlives the access token
    refreshed = sim.client.post(
        "/api/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": credentials.ST_CLIENT_ID,
        },
    )
    assert refreshed.status_code == 200
    new_headers = _bearer(refreshed.json()["access_token"])
    assert sim.client.get("/api/company", headers=new_headers).status_code == 200


def test_token_ttl_is_configurable() -> None:
    sim, close = make_sim(token_ttl_s=60)
    try:
        tokens = client_credentials(sim.client)
        assert tokens["expires_in"] == 60
        assert _claims(tokens["access_token"])["exp"] == T0 + 60
        sim.clock.advance(61)
        response = sim.client.get("/api/company", headers=_bearer(tokens["access_token"]))
        assert response.status_code == 401
    finally:
        close()


def test_admin_can_expire_tokens_and_change_ttl(sim: Sim) -> None:
    assert sim.get("/api/company").status_code == 200
    assert sim.client.post("/_sandbox/auth/expire").json()["expired"] >= 1
    assert sim.get("/api/company").status_code == 401
    put = sim.client.put("/_sandbox/auth", json={"token_ttl_s": 5})
    assert put.json()["token_ttl_s"] == 5
    assert client_credentials(sim.client)["expires_in"] == 5


def test_userinfo_names_the_api_user(sim: Sim) -> None:
    response = sim.get("/api/oauth2/userinfo")
    assert response.status_code == 200
    assert response.json()["data"]["id"] == API_USER


# --- legacy PHPSESSID sessions (§1b) --------------------------------------------------------------
def _login(client: TestClient) -> str:
    response = client.post(
        "/api/auth",
        json={"username": credentials.ST_USERNAME, "password": credentials.ST_PASSWORD},
    )
    assert response.status_code == 200
    body = response.json()["data"]
    assert body["authenticated"] is True
    assert response.cookies.get("PHPSESSID") == body["authToken"]
    token: str = body["authToken"]
    return token


def test_legacy_session_login_cookie_get_and_logout(sim: Sim) -> None:
    client = TestClient(sim.app)
    sid = _login(client)
    assert client.get(f"/api/job/{JOB}").status_code == 200  # cookie jar carries PHPSESSID
    session = client.get("/api/auth")
    assert session.status_code == 200
    assert session.json()["data"]["authenticated"] is True
    assert client.delete("/api/auth").status_code == 200
    other = TestClient(sim.app)
    other.cookies.set("PHPSESSID", sid)
    assert other.get(f"/api/job/{JOB}").status_code == 401
    assert other.get("/api/auth").status_code == 401


def test_legacy_bad_credentials_are_403(sim: Sim) -> None:
    response = TestClient(sim.app).post(
        "/api/auth", json={"username": credentials.ST_USERNAME, "password": "nope"}
    )
    assert response.status_code == 403
    assert response.json()["messages"]["error"]
    assert "PHPSESSID" not in response.cookies


def test_session_limit_evicts_the_oldest(sim: Sim) -> None:
    sids = [_login(TestClient(sim.app)) for _ in range(11)]
    probe = TestClient(sim.app)
    probe.cookies.set("PHPSESSID", sids[0])
    assert probe.get("/api/company").status_code == 401
    for sid in sids[1:]:
        probe.cookies.set("PHPSESSID", sid)
        assert probe.get("/api/company").status_code == 200


def test_session_expires_after_24_hours(sim: Sim) -> None:
    client = TestClient(sim.app)
    _login(client)
    sim.clock.advance(86400 + 1)
    assert client.get("/api/company").status_code == 401
