"""ServiceTrade client against hand-written responses in the reference's shapes (respx router)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import respx
from freezegun import freeze_time

from clients.errors import (
    AmbiguousWriteError,
    AuthorizationError,
    ConfigError,
    NotFound,
    PermanentError,
    SyncError,
    TransientError,
)
from clients.http import CallRecord
from clients.servicetrade.client import ServiceTradeClient
from clients.servicetrade.models import Company, Job, Timecard

BASE = "https://st.test"
CLIENT_ID = "stsync-test"
SECRET = "sEcReT-client-secret-42"
PASSWORD = "pa55-word-for-test"
TOKEN = "tok-AAAA-1111"


def envelope(data: Any, **messages: Any) -> dict[str, Any]:
    return {"data": data, "messages": messages}


def token_response(token: str = TOKEN, expires_in: int = 86400) -> httpx.Response:
    return httpx.Response(
        200, json={"access_token": token, "token_type": "Bearer", "expires_in": expires_in}
    )


def jwt(exp: int) -> str:
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none'})}.{part({'exp': exp, 'sub': 'x'})}.sig"


@pytest.fixture
def router() -> respx.Router:
    return respx.Router(base_url=BASE, assert_all_called=False)


@pytest.fixture
def records() -> list[CallRecord]:
    return []


@pytest.fixture
def token_route(router: respx.Router) -> respx.Route:
    return router.post("/api/oauth2/token").mock(return_value=token_response())


@pytest.fixture
def st(
    router: respx.Router, records: list[CallRecord], token_route: respx.Route
) -> Iterator[ServiceTradeClient]:
    with ServiceTradeClient(
        BASE,
        client_id=CLIENT_ID,
        client_secret=SECRET,
        transport=httpx.MockTransport(router.handler),
        retry_wait_s=0,
        on_call=records.append,
    ) as client:
        yield client


COMPANY = {"id": 200, "name": "Burger Bistro Inc", "status": "active", "externalIds": {}}


# --- authentication -----------------------------------------------------------------------------
def test_oauth_client_credentials_form_then_bearer(
    st: ServiceTradeClient, router: respx.Router, token_route: respx.Route
) -> None:
    route = router.get("/api/company/200").mock(
        return_value=httpx.Response(200, json=envelope(COMPANY))
    )
    assert st.get_company(200) == Company.model_validate(COMPANY)
    st.get_company(200)
    assert token_route.call_count == 1  # the token is reused
    token_req = token_route.calls.last.request
    assert token_req.headers["content-type"] == "application/x-www-form-urlencoded"
    form = dict(httpx.QueryParams(token_req.content.decode()))
    assert form == {
        "grant_type": "client_credentials",
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
    }
    assert route.calls.last.request.headers["authorization"] == f"Bearer {TOKEN}"


def test_base_url_with_api_suffix_is_accepted(
    router: respx.Router, token_route: respx.Route
) -> None:
    route = router.get("/api/company/200").mock(
        return_value=httpx.Response(200, json=envelope(COMPANY))
    )
    with ServiceTradeClient(
        BASE + "/api/",
        client_id=CLIENT_ID,
        client_secret=SECRET,
        transport=httpx.MockTransport(router.handler),
        retry_wait_s=0,
    ) as st:
        st.get_company(200)
    assert route.call_count == 1


def test_legacy_session_login_cookie_and_logout(
    router: respx.Router, records: list[CallRecord]
) -> None:
    login = router.post("/api/auth").mock(
        return_value=httpx.Response(
            200,
            json=envelope({"authenticated": True, "authToken": "sess-XYZ-123"}),
            headers={"Set-Cookie": "PHPSESSID=sess-XYZ-123; path=/"},
        )
    )
    logout = router.delete("/api/auth").mock(return_value=httpx.Response(204))
    job = router.get("/api/job/1001").mock(
        return_value=httpx.Response(
            200,
            json=envelope(
                {"id": 1001, "number": 52311, "type": "inspection", "status": "scheduled"}
            ),
        )
    )
    with ServiceTradeClient(
        BASE,
        username="api@example.com",
        password=PASSWORD,
        transport=httpx.MockTransport(router.handler),
        retry_wait_s=0,
        on_call=records.append,
    ) as st:
        assert st.get_job(1001).number == 52311
    assert json.loads(login.calls.last.request.content) == {
        "username": "api@example.com",
        "password": PASSWORD,
    }
    assert "PHPSESSID=sess-XYZ-123" in job.calls.last.request.headers["cookie"]
    assert logout.call_count == 1
    assert [(r.service, r.method) for r in records] == [
        ("auth", "POST"),
        ("job", "GET"),
        ("auth", "DELETE"),
    ]
    assert all("sess-XYZ-123" not in r.detail and PASSWORD not in r.detail for r in records)


def test_session_bad_credentials_is_authorization_error(router: respx.Router) -> None:
    router.post("/api/auth").mock(
        return_value=httpx.Response(403, json=envelope(None, error=[f"bad password {PASSWORD}"]))
    )
    with (
        ServiceTradeClient(
            BASE,
            username="u@example.com",
            password=PASSWORD,
            transport=httpx.MockTransport(router.handler),
            retry_wait_s=0,
        ) as st,
        pytest.raises(AuthorizationError) as info,
    ):
        st.get_job(1)
    assert PASSWORD not in str(info.value)
    assert "403" in str(info.value)


def test_oauth_refused_credentials(router: respx.Router) -> None:
    router.post("/api/oauth2/token").mock(
        return_value=httpx.Response(
            401, json={"error": "invalid_grant", "error_description": f"bad secret {SECRET}"}
        )
    )
    with (
        ServiceTradeClient(
            BASE,
            client_id=CLIENT_ID,
            client_secret=SECRET,
            transport=httpx.MockTransport(router.handler),
            retry_wait_s=0,
        ) as st,
        pytest.raises(AuthorizationError) as info,
    ):
        st.get_company(1)
    assert "invalid_grant" in str(info.value)
    assert SECRET not in str(info.value)


def test_client_needs_credentials() -> None:
    with pytest.raises(ConfigError):
        ServiceTradeClient(BASE)
    with pytest.raises(ConfigError):
        ServiceTradeClient(BASE, client_id="only-id")


def test_token_refreshed_five_minutes_before_expiry(router: respx.Router) -> None:
    tokens = iter([token_response("tok-1", 3600), token_response("tok-2", 3600)])
    token_route = router.post("/api/oauth2/token").mock(side_effect=lambda req: next(tokens))
    route = router.get("/api/company/200").mock(
        return_value=httpx.Response(200, json=envelope(COMPANY))
    )
    with (
        freeze_time("2026-01-01 00:00:00") as clock,
        ServiceTradeClient(
            BASE,
            client_id=CLIENT_ID,
            client_secret=SECRET,
            transport=httpx.MockTransport(router.handler),
            retry_wait_s=0,
        ) as st,
    ):
        st.get_company(200)
        clock.tick(3600 - 300 - 5)  # still more than 5 min left
        st.get_company(200)
        assert token_route.call_count == 1
        clock.tick(10)  # now inside the 5 min margin
        st.get_company(200)
        assert token_route.call_count == 2
    assert [c.request.headers["authorization"] for c in route.calls] == [
        "Bearer tok-1",
        "Bearer tok-1",
        "Bearer tok-2",
    ]


def test_token_refresh_uses_jwt_exp(router: respx.Router) -> None:
    start = 1_767_225_600  # 2026-01-01T00:00:00Z
    first, second = jwt(start + 1000), jwt(start + 5000)
    tokens = iter([token_response(first, 86400), token_response(second, 86400)])
    token_route = router.post("/api/oauth2/token").mock(side_effect=lambda req: next(tokens))
    router.get("/api/company/200").mock(return_value=httpx.Response(200, json=envelope(COMPANY)))
    with (
        freeze_time("2026-01-01 00:00:00") as clock,
        ServiceTradeClient(
            BASE,
            client_id=CLIENT_ID,
            client_secret=SECRET,
            transport=httpx.MockTransport(router.handler),
            retry_wait_s=0,
        ) as st,
    ):
        st.get_company(200)
        clock.tick(1000 - 300 + 1)  # exp says 1000 s although expires_in says a day
        st.get_company(200)
    assert token_route.call_count == 2


def test_401_reauthenticates_once_and_replays(
    st: ServiceTradeClient, router: respx.Router, token_route: respx.Route
) -> None:
    route = router.get("/api/company/200").mock(
        side_effect=[httpx.Response(401), httpx.Response(200, json=envelope(COMPANY))]
    )
    assert st.get_company(200).id == 200
    assert token_route.call_count == 2
    assert route.call_count == 2


def test_second_401_is_authorization_error_not_retried(
    st: ServiceTradeClient, router: respx.Router, token_route: respx.Route
) -> None:
    route = router.put("/api/invoice/9").mock(return_value=httpx.Response(401))
    with pytest.raises(AuthorizationError, match="re-authenticating"):
        st.set_invoice_status(9, "processed", "INV1")
    assert route.call_count == 2
    assert token_route.call_count == 2


# --- classification -------------------------------------------------------------------------------
def test_404_is_not_found(st: ServiceTradeClient, router: respx.Router) -> None:
    router.get("/api/job/5").mock(
        return_value=httpx.Response(404, json={"messages": {"error": ["Not found"]}, "data": None})
    )
    with pytest.raises(NotFound, match="Not found"):
        st.get_job(5)


def test_400_carries_servicetrade_messages(st: ServiceTradeClient, router: respx.Router) -> None:
    route = router.post("/api/jobitem").mock(
        return_value=httpx.Response(
            400,
            json={
                "messages": {
                    "error": ["Location is required", "Type is required"],
                    "validation": {"locationId": "Location is required"},
                },
                "data": None,
            },
        )
    )
    with pytest.raises(PermanentError) as info:
        st.create_job_item({"jobId": 1, "name": "x"})
    err = info.value
    assert type(err) is PermanentError
    assert "Location is required; Type is required; locationId: Location is required" in str(err)
    assert "HTTP 400" in str(err)
    assert route.call_count == 1


def test_409_is_permanent(st: ServiceTradeClient, router: respx.Router) -> None:
    router.put("/api/invoice/7").mock(
        return_value=httpx.Response(409, json=envelope(None, error=["contract does not apply"]))
    )
    with pytest.raises(PermanentError, match="contract does not apply"):
        st.set_invoice_status(7, "processed")


def test_403_is_authorization_error(st: ServiceTradeClient, router: respx.Router) -> None:
    route = router.get("/api/webhook").mock(
        return_value=httpx.Response(403, json=envelope(None, error=["admin.account required"]))
    )
    with pytest.raises(AuthorizationError, match="admin.account"):
        st.list_webhooks()
    assert route.call_count == 1  # permanent: not retried


def test_429_read_is_retried_then_transient_with_retry_after(
    st: ServiceTradeClient, router: respx.Router
) -> None:
    route = router.get("/api/company/1").mock(
        return_value=httpx.Response(429, headers={"Retry-After": "7"})
    )
    with pytest.raises(TransientError) as info:
        st.get_company(1)
    assert info.value.retry_after == 7.0
    assert route.call_count == 3


def test_429_with_long_retry_after_is_left_to_the_task(
    st: ServiceTradeClient, router: respx.Router
) -> None:
    route = router.get("/api/company/1").mock(
        return_value=httpx.Response(429, headers={"Retry-After": "120"})
    )
    with pytest.raises(TransientError) as info:
        st.get_company(1)
    assert info.value.retry_after == 120.0
    assert route.call_count == 1


def test_429_on_write_is_transient_not_ambiguous(
    st: ServiceTradeClient, router: respx.Router
) -> None:
    route = router.post("/api/comment").mock(
        return_value=httpx.Response(429, headers={"Retry-After": "3"})
    )
    with pytest.raises(TransientError) as info:
        st.add_comment(6, 1, "x")
    assert not isinstance(info.value, AmbiguousWriteError)
    assert route.call_count == 1


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_read_is_retried_three_times(
    st: ServiceTradeClient, router: respx.Router, status: int
) -> None:
    route = router.get("/api/job/1").mock(return_value=httpx.Response(status))
    with pytest.raises(TransientError) as info:
        st.get_job(1)
    assert not isinstance(info.value, AmbiguousWriteError)
    assert route.call_count == 3


def test_read_succeeds_after_transient_failures(
    st: ServiceTradeClient, router: respx.Router
) -> None:
    route = router.get("/api/company/200").mock(
        side_effect=[
            httpx.Response(503),
            httpx.ConnectError("refused"),
            httpx.Response(200, json=envelope(COMPANY)),
        ]
    )
    assert st.get_company(200).name == "Burger Bistro Inc"
    assert route.call_count == 3


@pytest.mark.parametrize("status", [500, 503])
def test_5xx_write_is_ambiguous_and_not_retried(
    st: ServiceTradeClient, router: respx.Router, status: int
) -> None:
    route = router.post("/api/externalid/company/200/spectrum").mock(
        return_value=httpx.Response(status)
    )
    with pytest.raises(AmbiguousWriteError, match="may have been applied"):
        st.set_external_id("company", 200, "spectrum", "CUST01")
    assert route.call_count == 1


def test_timeout_read_retried_write_ambiguous(st: ServiceTradeClient, router: respx.Router) -> None:
    read = router.get("/api/job/1").mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(TransientError, match="timed out"):
        st.get_job(1)
    assert read.call_count == 3
    write = router.delete("/api/jobitem/4").mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(AmbiguousWriteError, match="timed out"):
        st.delete_job_item(4)
    assert write.call_count == 1


def test_connect_failure_on_write_is_plainly_transient(
    st: ServiceTradeClient, router: respx.Router
) -> None:
    route = router.post("/api/comment").mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(TransientError) as info:
        st.add_comment(6, 1, "x")
    assert not isinstance(info.value, AmbiguousWriteError)  # nothing was sent
    assert route.call_count == 1


def test_non_json_success_on_write_is_ambiguous(
    st: ServiceTradeClient, router: respx.Router
) -> None:
    router.put("/api/invoice/3").mock(return_value=httpx.Response(200, text="<html>proxy</html>"))
    with pytest.raises(AmbiguousWriteError):
        st.set_invoice_status(3, "processed")


def test_unexpected_record_shape_names_the_field(
    st: ServiceTradeClient, router: respx.Router
) -> None:
    router.get("/api/job/8").mock(
        return_value=httpx.Response(
            200, json=envelope({"id": 8, "type": "repair", "status": "new"})
        )
    )
    with pytest.raises(PermanentError, match=r"job 8: unexpected record shape: number"):
        st.get_job(8)


def test_secrets_never_in_exceptions_or_records(
    st: ServiceTradeClient, router: respx.Router, records: list[CallRecord]
) -> None:
    echo = f"bad request from {CLIENT_ID} with {SECRET} and token {TOKEN}"
    router.get("/api/job/1").mock(return_value=httpx.Response(500, text=echo))
    router.put("/api/invoice/1").mock(
        return_value=httpx.Response(400, json=envelope(None, error=[echo]))
    )
    errors: list[SyncError] = []
    for call in (lambda: st.get_job(1), lambda: st.set_invoice_status(1, "failed")):
        with pytest.raises(SyncError) as info:
            call()
        errors.append(info.value)
    texts = [str(e) for e in errors] + [r.detail for r in records]
    assert any("***" in t for t in texts)
    for text in texts:
        assert SECRET not in text
        assert TOKEN not in text


# --- on_call ------------------------------------------------------------------------------------
def test_every_call_is_reported(
    st: ServiceTradeClient, router: respx.Router, records: list[CallRecord]
) -> None:
    router.get("/api/company/200").mock(return_value=httpx.Response(200, json=envelope(COMPANY)))
    router.post("/api/comment").mock(return_value=httpx.Response(503))
    st.get_company(200)
    with pytest.raises(AmbiguousWriteError):
        st.add_comment(5, 200, "hello")
    assert [(r.system, r.service, r.method, r.outcome, r.status) for r in records] == [
        ("servicetrade", "oauth2/token", "POST", "ok", 200),
        ("servicetrade", "company", "GET", "ok", 200),
        ("servicetrade", "comment", "POST", "ambiguous", 503),
    ]
    assert all(len(r.request_digest) == 64 and r.duration_ms >= 0 for r in records)
    assert "HTTP 503" in records[-1].detail


def test_same_write_same_digest(
    st: ServiceTradeClient, router: respx.Router, records: list[CallRecord]
) -> None:
    router.post("/api/externalid/company/1/spectrum").mock(
        return_value=httpx.Response(200, json=envelope(None))
    )
    st.set_external_id("company", 1, "spectrum", "A")
    st.set_external_id("company", 1, "spectrum", "A")
    st.set_external_id("company", 1, "spectrum", "B")
    digests = [r.request_digest for r in records if r.service == "externalid"]
    assert digests[0] == digests[1] != digests[2]


# --- pagination ---------------------------------------------------------------------------------
def test_iter_pages_walks_three_pages(st: ServiceTradeClient, router: respx.Router) -> None:
    def page(request: httpx.Request) -> httpx.Response:
        n = int(request.url.params["page"])
        items = [{"id": n * 10 + i, "name": f"C{n}{i}"} for i in range(2)]
        return httpx.Response(200, json=envelope({"companies": items, "page": n, "totalPages": 3}))

    route = router.get("/api/company").mock(side_effect=page)
    companies = list(st.iter_companies(updated_after=1_700_000_000))
    assert [c.id for c in companies] == [10, 11, 20, 21, 30, 31]
    assert route.call_count == 3
    params = [dict(c.request.url.params) for c in route.calls]
    assert [p["page"] for p in params] == ["1", "2", "3"]
    assert all(p["updatedAfter"] == "1700000000" and int(p["limit"]) > 0 for p in params)


def test_iter_pages_empty_and_page_retry(st: ServiceTradeClient, router: respx.Router) -> None:
    router.get("/api/job").mock(
        side_effect=[
            httpx.Response(502),  # page 1 retried on its own
            httpx.Response(200, json=envelope({"jobs": [], "page": 1, "totalPages": 0})),
        ]
    )
    assert list(st.iter_jobs()) == []


def test_iter_jobs_asks_for_all_statuses(st: ServiceTradeClient, router: respx.Router) -> None:
    route = router.get("/api/job").mock(
        return_value=httpx.Response(
            200,
            json=envelope(
                {
                    "jobs": [{"id": 1, "number": 7, "type": "repair", "status": "new"}],
                    "page": 1,
                    "totalPages": 1,
                }
            ),
        )
    )
    jobs = list(st.iter_jobs())
    assert jobs == [Job.model_validate({"id": 1, "number": 7, "type": "repair", "status": "new"})]
    assert route.calls.last.request.url.params["status"] == "all"


def test_iter_invoices_status_list(st: ServiceTradeClient, router: respx.Router) -> None:
    route = router.get("/api/invoice").mock(
        return_value=httpx.Response(
            200, json=envelope({"invoices": [], "page": 1, "totalPages": 0})
        )
    )
    list(st.iter_invoices(status=["pending_accounting", "void"]))
    assert route.calls.last.request.url.params["status"] == "pending_accounting,void"


def test_missing_plural_key_is_reported(st: ServiceTradeClient, router: respx.Router) -> None:
    router.get("/api/location").mock(
        return_value=httpx.Response(
            200, json=envelope({"items": [{"id": 1}], "page": 1, "totalPages": 1})
        )
    )
    with pytest.raises(PermanentError, match="no 'locations' list"):
        list(st.iter_locations(company_id=5))


def test_iter_timecard_pages(st: ServiceTradeClient, router: respx.Router) -> None:
    card = {
        "id": 77,
        "status": "approved",
        "approvedOn": 1_767_300_000,
        "workDate": 1_767_225_600,
        "user": {"id": 7, "name": "Sam Tech", "externalIds": {"spectrum": "E100"}},
        "entries": [
            {
                "id": 1,
                "kind": "labor",
                "job": {"id": 1001, "number": 52311},
                "serviceLine": {"id": 5, "abbr": "SP"},
                "hours": 2.5,
                "payRate": 42.0,
            },
            {"id": 2, "kind": "generic", "label": "PTO", "hours": 8},
        ],
    }

    def page(request: httpx.Request) -> httpx.Response:
        n = int(request.url.params["page"])
        return httpx.Response(
            200, json=envelope({"timecards": [{**card, "id": 70 + n}], "page": n, "totalPages": 2})
        )

    route = router.get("/api/timecard").mock(side_effect=page)
    pages = list(st.iter_timecard_pages(1_767_225_600, 1_767_830_400))
    assert [[t.id for t in p] for p in pages] == [[71], [72]]
    assert isinstance(pages[0][0], Timecard)
    params = route.calls[0].request.url.params
    assert params["status"] == "approved"
    assert params["approvedAfter"] == "1767225600"
    assert params["approvedBefore"] == "1767830400"


# --- writes and small reads ---------------------------------------------------------------------
def test_external_ids(st: ServiceTradeClient, router: respx.Router) -> None:
    post = router.post("/api/externalid/location/820/spectrum").mock(
        return_value=httpx.Response(200, json=envelope({"value": "SITE01"}))
    )
    router.get("/api/externalid/location/820").mock(
        return_value=httpx.Response(
            200, json=envelope({"values": {"spectrum": "SITE01", "qb": 12}})
        )
    )
    st.set_external_id("location", 820, "spectrum", "SITE01")
    assert json.loads(post.calls.last.request.content) == {"value": "SITE01"}
    assert st.get_external_ids("location", 820) == {"spectrum": "SITE01", "qb": "12"}


def test_comments(st: ServiceTradeClient, router: respx.Router) -> None:
    post = router.post("/api/comment").mock(
        return_value=httpx.Response(
            200, json=envelope({"id": 5, "entityType": 6, "entityId": 4401, "content": "fix GL"})
        )
    )
    comment = st.add_comment(6, 4401, "fix GL")
    assert comment.id == 5
    assert json.loads(post.calls.last.request.content) == {
        "entityType": 6,
        "entityId": 4401,
        "content": "fix GL",
        "visibility": ["billing"],
    }
    router.get("/api/comment").mock(
        return_value=httpx.Response(
            200,
            json=envelope(
                {"comments": [{"id": 5, "content": "fix GL"}], "page": 1, "totalPages": 1}
            ),
        )
    )
    assert [c.content for c in st.list_comments(6, 4401)] == ["fix GL"]


def test_set_invoice_status(st: ServiceTradeClient, router: respx.Router) -> None:
    route = router.put("/api/invoice/4401").mock(
        return_value=httpx.Response(
            200, json=envelope({"id": 4401, "status": "processed", "invoiceNumber": "ST4401"})
        )
    )
    inv = st.set_invoice_status(4401, "processed", "ST4401")
    assert inv.invoice_number == "ST4401"
    assert json.loads(route.calls.last.request.content) == {
        "status": "processed",
        "invoiceNumber": "ST4401",
    }
    st.set_invoice_status(4401, "failed")
    assert json.loads(route.calls.last.request.content) == {"status": "failed"}


def test_job_items_crud(st: ServiceTradeClient, router: respx.Router) -> None:
    item = {
        "id": 9,
        "name": "Pipe",
        "quantity": 5,
        "cost": 6.5,
        "source": {"type": "refnumber", "value": "PO 1001/001"},
    }
    router.get("/api/jobitem").mock(
        return_value=httpx.Response(
            200, json=envelope({"jobItems": [item], "page": 1, "totalPages": 1})
        )
    )
    create = router.post("/api/jobitem").mock(return_value=httpx.Response(200, json=envelope(item)))
    update = router.put("/api/jobitem/9").mock(
        return_value=httpx.Response(200, json=envelope(item))
    )
    delete = router.delete("/api/jobitem/9").mock(return_value=httpx.Response(200, json={}))
    (listed,) = st.list_job_items(1001)
    assert listed.source is not None and listed.source.value == "PO 1001/001"
    assert str(listed.cost) == "6.5"
    assert st.create_job_item({"jobId": 1001, "name": "Pipe"}).id == 9
    assert json.loads(create.calls.last.request.content) == {"jobId": 1001, "name": "Pipe"}
    st.update_job_item(9, {"quantity": 6})
    assert json.loads(update.calls.last.request.content) == {"quantity": 6}
    st.delete_job_item(9)
    assert delete.call_count == 1


def test_webhooks_register_list_delete(st: ServiceTradeClient, router: respx.Router) -> None:
    hook = "https://ingest.example/hooks/st/hook-secret-abcdef0123"
    created = {"id": 26872, "hookUrl": hook, "enabled": True, "confirmed": False}
    post = router.post("/api/webhook").mock(
        return_value=httpx.Response(200, json=envelope(created))
    )
    router.get("/api/webhook").mock(
        return_value=httpx.Response(200, json=envelope({"webhooks": [created]}))
    )
    delete = router.delete("/api/webhook/26872").mock(return_value=httpx.Response(204))
    assert st.register_webhook(hook, {3: ["created", "updated"], 6: ["updated"]}) == created
    assert json.loads(post.calls.last.request.content) == {
        "hookUrl": hook,
        "enabled": True,
        "includeChangesets": True,
        "entityEvents": [
            {"entityType": 3, "actions": ["created", "updated"]},
            {"entityType": 6, "actions": ["updated"]},
        ],
    }
    assert st.list_webhooks() == [created]
    st.delete_webhook(26872)
    assert delete.call_count == 1


def test_webhook_secret_not_echoed_in_errors(
    st: ServiceTradeClient, router: respx.Router, records: list[CallRecord]
) -> None:
    hook = "https://ingest.example/hooks/st/hook-secret-abcdef0123"
    router.post("/api/webhook").mock(
        return_value=httpx.Response(
            400, json=envelope(None, validation={"hookUrl": f"{hook} unreachable"})
        )
    )
    with pytest.raises(PermanentError) as info:
        st.register_webhook(hook, {3: ["created"]})
    assert "hook-secret-abcdef0123" not in str(info.value)
    assert "unreachable" in str(info.value)
    assert all("hook-secret-abcdef0123" not in r.detail for r in records)


def test_reference_lists(st: ServiceTradeClient, router: respx.Router) -> None:
    router.get("/api/serviceline").mock(
        return_value=httpx.Response(
            200,
            json=envelope(
                {
                    "servicelines": [{"id": 5, "name": "Sprinkler", "abbr": "SP"}],
                    "page": 1,
                    "totalPages": 1,
                }
            ),
        )
    )
    router.get("/api/libitem").mock(
        return_value=httpx.Response(
            200,
            json=envelope(
                {
                    "libItems": [{"id": 66, "name": "Labor", "code": "LAB"}],
                    "page": 1,
                    "totalPages": 1,
                }
            ),
        )
    )
    router.get("/api/serviceline/5").mock(
        return_value=httpx.Response(
            200, json=envelope({"id": 5, "name": "Sprinkler", "abbr": "SP"})
        )
    )
    assert [s.abbr for s in st.list_servicelines()] == ["SP"]
    assert [i.code for i in st.list_libitems()] == ["LAB"]
    assert st.get_serviceline(5).name == "Sprinkler"
