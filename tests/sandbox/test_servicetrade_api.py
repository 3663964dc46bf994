"""ServiceTrade simulator: envelope, errors, pagination, filters and the non-invoice resources
(reference §2–§6, §11)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.sandbox.test_servicetrade_support import (
    API_USER,
    BIG_ID,
    CUSTOMER,
    CUSTOMER_2,
    INVOICE,
    JOB,
    JOB_CANCELED,
    JOB_DONE,
    JOB_ITEM,
    LIB_ITEM,
    LOC,
    LOC_2,
    OFFICE,
    SERVICE_LINE,
    T0,
    TECH,
    TIMECARD,
    TIMECARD_APPROVED,
    VENDOR,
    Sim,
    data,
    make_sim,
)


@pytest.fixture
def sim() -> Iterator[Sim]:
    s, close = make_sim()
    yield s
    close()


# --- envelope and errors (§2) ---------------------------------------------------------------------
def test_single_get_returns_the_object_under_data(sim: Sim) -> None:
    response = sim.get(f"/api/job/{JOB}")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"data", "messages"}
    job = body["data"]
    assert job["id"] == JOB
    assert job["uri"].endswith(f"/api/job/{JOB}")
    assert job["number"] == 52311
    assert isinstance(job["created"], int) and isinstance(job["updated"], int)
    assert response.headers["x-request-id"]


def test_embedded_refs_show_the_current_name(sim: Sim) -> None:
    # the seed gave location 820 a stale company name; reads show the company's real name
    location = data(sim.get(f"/api/location/{LOC}"))
    assert location["company"]["name"] == "Burger Bistro Inc"
    data(sim.put(f"/api/company/{CUSTOMER}", {"name": "Burger Bistro LLC"}))
    assert data(sim.get(f"/api/job/{JOB}"))["customer"]["name"] == "Burger Bistro LLC"


@pytest.mark.parametrize(
    "path",
    [
        f"/api/job/{JOB + 999_999}",
        "/api/job/abc",
        "/api/nothing",
        "/api/nothing/1",
        "/api/job/1/2/3",
    ],
)
def test_not_found_shape(sim: Sim, path: str) -> None:
    response = sim.get(path)
    assert response.status_code == 404
    body = response.json()
    assert body["data"] is None
    assert body["messages"]["error"] == ["Not found"]


def test_validation_error_shape(sim: Sim) -> None:
    response = sim.post("/api/location", {"refNumber": "x"})
    assert response.status_code == 400
    body = response.json()
    assert body["data"] is None
    validation = body["messages"]["validation"]
    assert {"name", "companyId", "address"} <= set(validation)
    assert "Name is required" in body["messages"]["error"]


def test_invalid_json_body_is_400(sim: Sim) -> None:
    response = sim.client.post("/api/job", content=b"{nope", headers=sim.headers)
    assert response.status_code == 400
    assert response.json()["messages"]["error"]


def test_read_only_resources_refuse_writes(sim: Sim) -> None:
    response = sim.post("/api/serviceline", {"name": "New"})
    assert response.status_code == 405
    assert response.json()["messages"]["error"]
    assert sim.delete(f"/api/user/{TECH}").status_code == 405


def test_sixteen_digit_ids_round_trip(sim: Sim) -> None:
    company = data(sim.get(f"/api/company/{BIG_ID}"))
    assert company["id"] == BIG_ID
    location = data(
        sim.post(
            "/api/location",
            {"name": "Pizza #2", "companyId": str(BIG_ID), "address": {"street": "2 Oak"}},
        )
    )
    assert location["company"]["id"] == BIG_ID
    found = data(sim.get("/api/location", companyId=BIG_ID))["locations"]
    assert {loc["id"] for loc in found} == {LOC_2, location["id"]}


# --- pagination (§2) --------------------------------------------------------------------------------
def test_pagination_pages_and_total_pages(sim: Sim) -> None:
    for i in range(5):
        data(sim.post("/api/company", {"name": f"Company {i}"}))
    total = len(sim.state.all("company"))
    assert total == 8
    seen: list[int] = []
    for page in (1, 2, 3):
        body = data(sim.get("/api/company", page=page, limit=3))
        assert body["page"] == page
        assert body["totalPages"] == 3
        seen.extend(c["id"] for c in body["companies"])
    assert len(seen) == len(set(seen)) == total
    beyond = data(sim.get("/api/company", page=4, limit=3))
    assert beyond["companies"] == [] and beyond["totalPages"] == 3


def test_empty_list_has_zero_total_pages(sim: Sim) -> None:
    body = data(sim.get("/api/company", name="no such company"))
    assert body == {"companies": [], "page": 1, "totalPages": 0}


def test_location_default_limit_is_10_and_max_5000(sim: Sim) -> None:
    for i in range(12):
        data(
            sim.post(
                "/api/location",
                {"name": f"Site {i}", "companyId": CUSTOMER, "address": {"street": f"{i} Road"}},
            )
        )
    default = data(sim.get("/api/location"))
    assert len(default["locations"]) == 10
    assert default["totalPages"] == 2
    clamped = data(sim.get("/api/location", limit=100_000))
    assert clamped["totalPages"] == 1


@pytest.mark.parametrize("params", [{"page": 0}, {"page": "x"}, {"limit": 0}, {"limit": "many"}])
def test_bad_paging_parameters_are_400(sim: Sim, params: dict[str, object]) -> None:
    response = sim.get("/api/company", **params)
    assert response.status_code == 400
    assert response.json()["messages"]["validation"]


# --- filters (§2, §5) -------------------------------------------------------------------------------
def test_job_list_defaults_to_scheduled(sim: Sim) -> None:
    jobs = data(sim.get("/api/job"))["jobs"]
    assert [j["id"] for j in jobs] == [JOB]


def test_job_number_lists_any_status(sim: Sim) -> None:
    jobs = data(sim.get("/api/job", number=52312))["jobs"]
    assert [j["id"] for j in jobs] == [JOB_DONE]


def test_job_status_all_excludes_canceled_and_comma_lists_work(sim: Sim) -> None:
    every = {j["id"] for j in data(sim.get("/api/job", status="all"))["jobs"]}
    assert every == {JOB, JOB_DONE}
    both = {j["id"] for j in data(sim.get("/api/job", status="completed,canceled"))["jobs"]}
    assert both == {JOB_DONE, JOB_CANCELED}
    assert sim.get("/api/job", status="bogus").status_code == 400


def test_updated_after_and_before_are_inclusive(sim: Sim) -> None:
    sim.clock.advance(100)
    data(sim.put(f"/api/job/{JOB}", {"description": "touched"}))
    touched_at = T0 + 100
    after = data(sim.get("/api/job", status="all", updatedAfter=touched_at))["jobs"]
    assert [j["id"] for j in after] == [JOB]
    assert data(sim.get("/api/job", status="all", updatedAfter=touched_at + 1))["jobs"] == []
    before = data(sim.get("/api/job", status="all", updatedBefore=touched_at - 1))["jobs"]
    assert [j["id"] for j in before] == [JOB_DONE]


def test_created_after_filter(sim: Sim) -> None:
    sim.clock.advance(50)
    new = data(sim.post("/api/company", {"name": "Late Co"}))
    found = data(sim.get("/api/company", createdAfter=T0 + 50))["companies"]
    assert [c["id"] for c in found] == [new["id"]]
    assert sim.get("/api/company", createdAfter="yesterday").status_code == 400


def test_location_filters_company_and_vendor_offices(sim: Sim) -> None:
    by_company = data(sim.get("/api/location", companyId=CUSTOMER))["locations"]
    assert [loc["id"] for loc in by_company] == [LOC]
    # §4: offices are the vendor company's locations
    offices = data(sim.get("/api/location", isVendor="true"))["locations"]
    assert [loc["id"] for loc in offices] == [OFFICE]
    # the default list is customer locations only
    default = {loc["id"] for loc in data(sim.get("/api/location"))["locations"]}
    assert default == {LOC, LOC_2}


def test_invoice_filters_by_job_and_customer(sim: Sim) -> None:
    assert [i["id"] for i in data(sim.get("/api/invoice", jobId=JOB))["invoices"]] == [INVOICE]
    assert data(sim.get("/api/invoice", customerId=CUSTOMER_2))["invoices"] == []


# --- companies, locations, jobs (§5.1–5.3) ------------------------------------------------------
def test_company_crud(sim: Sim) -> None:
    created = data(
        sim.post(
            "/api/company",
            {
                "name": "New Customer",
                "addressStreet": "5 Pine",
                "addressCity": "Cary",
                "addressState": "NC",
                "addressPostalCode": "27511",
                "phone": "919-555-0100",
            },
        )
    )
    assert created["address"] == {
        "street": "5 Pine",
        "city": "Cary",
        "state": "NC",
        "postalCode": "27511",
    }
    assert created["isCustomer"] is True and created["status"] == "active"
    updated = data(sim.put(f"/api/company/{created['id']}", {"address": {"city": "Apex"}}))
    assert updated["address"]["city"] == "Apex" and updated["address"]["street"] == "5 Pine"
    assert sim.delete(f"/api/company/{created['id']}").status_code == 200
    assert sim.get(f"/api/company/{created['id']}").status_code == 404


def test_location_defaults_to_the_primary_office(sim: Sim) -> None:
    created = data(
        sim.post(
            "/api/location",
            {"name": "New Site", "companyId": CUSTOMER, "address": {"street": "3 Birch"}},
        )
    )
    assert [o["id"] for o in created["offices"]] == [OFFICE]
    assert created["status"] == "active"
    assert created["company"]["name"] == "Burger Bistro Inc"


def test_job_post_requires_location_vendor_and_type(sim: Sim) -> None:
    response = sim.post("/api/job", {"description": "no basics"})
    assert response.status_code == 400
    assert {"locationId", "vendorId", "type"} <= set(response.json()["messages"]["validation"])
    unknown = sim.post("/api/job", {"locationId": 999, "vendorId": VENDOR, "type": "repair"})
    assert unknown.status_code == 400
    assert "locationId" in unknown.json()["messages"]["validation"]
    bad_type = sim.post("/api/job", {"locationId": LOC, "vendorId": VENDOR, "type": "nope"})
    assert "type" in bad_type.json()["messages"]["validation"]


def test_job_post_defaults_customer_and_numbers(sim: Sim) -> None:
    job = data(
        sim.post(
            "/api/job",
            {
                "locationId": LOC,
                "vendorId": VENDOR,
                "type": "repair",
                "customerPo": "PO-1",
                "ownerId": TECH,
            },
        )
    )
    assert job["customer"]["id"] == CUSTOMER  # §5.3: the location's company
    assert job["assignedOffice"]["id"] == OFFICE
    assert job["owner"]["id"] == TECH
    assert job["status"] == "scheduled"
    assert job["number"] > 52313
    second = data(sim.post("/api/job", {"locationId": LOC, "vendorId": VENDOR, "type": "repair"}))
    assert second["number"] == job["number"] + 1


def test_job_customer_po_is_at_most_40_chars(sim: Sim) -> None:
    response = sim.post(
        "/api/job",
        {"locationId": LOC, "vendorId": VENDOR, "type": "repair", "customerPo": "x" * 41},
    )
    assert response.status_code == 400
    assert "customerPo" in response.json()["messages"]["validation"]


def test_job_put_is_partial(sim: Sim) -> None:
    job = data(sim.put(f"/api/job/{JOB}", {"status": "completed", "completedOn": T0}))
    assert job["status"] == "completed" and job["completedOn"] == T0
    assert job["name"] == "Annual Inspection"
    assert sim.put(f"/api/job/{JOB}", {"status": "done"}).status_code == 400


# --- external ids (§6) ----------------------------------------------------------------------------
def test_external_id_routes_both_ways(sim: Sim) -> None:
    put = sim.put(f"/api/externalid/company/{CUSTOMER}/spectrum", {"value": "C00001"})
    assert data(put) == {"value": "C00001"}
    assert data(sim.get(f"/api/externalid/company/{CUSTOMER}")) == {
        "values": {"spectrum": "C00001"}
    }
    assert data(sim.get(f"/api/externalid/company/{CUSTOMER}/spectrum")) == {"value": "C00001"}
    # lookup by value: segment 2 is not numeric
    found = data(sim.get("/api/externalid/company/spectrum/C00001"))
    assert found["id"] == CUSTOMER and found["externalIds"] == {"spectrum": "C00001"}
    assert data(sim.get(f"/api/company/{CUSTOMER}"))["externalIds"] == {"spectrum": "C00001"}
    # POST works too and replaces the value; numeric entity types are accepted
    data(sim.post(f"/api/externalid/5/{CUSTOMER}/spectrum", {"value": "C00002"}))
    assert sim.get("/api/externalid/company/spectrum/C00001").status_code == 404
    # an empty value removes the key
    data(sim.put(f"/api/externalid/company/{CUSTOMER}/spectrum", {"value": ""}))
    assert data(sim.get(f"/api/externalid/company/{CUSTOMER}")) == {"values": {}}
    assert sim.get(f"/api/externalid/company/{CUSTOMER}/spectrum").status_code == 404


def test_external_id_errors(sim: Sim) -> None:
    assert sim.get("/api/externalid/company/999999").status_code == 404
    assert sim.get("/api/externalid/comment/1").status_code == 404
    missing_value = sim.put(f"/api/externalid/job/{JOB}/spectrum", {})
    assert missing_value.status_code == 400
    assert "value" in missing_value.json()["messages"]["validation"]


def test_external_ids_in_bodies_are_merged(sim: Sim) -> None:
    job = data(
        sim.post(
            "/api/job",
            {
                "locationId": LOC,
                "vendorId": VENDOR,
                "type": "repair",
                "externalIds": {"spectrum": "J1"},
            },
        )
    )
    assert job["externalIds"] == {"spectrum": "J1"}
    job = data(sim.put(f"/api/job/{job['id']}", {"externalIds": {"other": "X"}}))
    assert job["externalIds"] == {"spectrum": "J1", "other": "X"}
    job = data(sim.put(f"/api/job/{job['id']}", {"externalIds": {"other": ""}}))
    assert job["externalIds"] == {"spectrum": "J1"}


# --- job items, lib items (§5.7) ------------------------------------------------------------------
def test_jobitem_crud_with_source(sim: Sim) -> None:
    created = data(
        sim.post(
            "/api/jobitem",
            {
                "jobId": JOB,
                "name": "fancy foo",
                "quantity": 5,
                "cost": 6,
                "serviceLineId": SERVICE_LINE,
                "usedOn": T0,
                "source": {"type": "refnumber", "value": "PO CC-654"},
            },
        )
    )
    assert created["source"] == {"type": "refnumber", "value": "PO CC-654"}
    assert created["job"]["id"] == JOB and created["job"]["number"] == 52311
    assert created["serviceLine"]["abbr"] == "SP"
    assert created["quantity"] == 5 and created["cost"] == 6
    listed = data(sim.get("/api/jobitem", jobId=JOB))["jobItems"]
    assert {i["id"] for i in listed} == {JOB_ITEM, created["id"]}
    relinked = data(
        sim.put(f"/api/jobitem/{created['id']}", {"libitemId": LIB_ITEM, "quantity": 7.5})
    )
    assert relinked["libItem"]["id"] == LIB_ITEM and relinked["libItem"]["code"] == "LAB"
    assert relinked["quantity"] == 7.5
    assert relinked["source"]["value"] == "PO CC-654"
    assert sim.delete(f"/api/jobitem/{created['id']}").status_code == 200
    assert sim.get(f"/api/jobitem/{created['id']}").status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x"}, "jobId"),
        ({"jobId": JOB, "name": "x", "source": {"type": "refnumber"}}, "source"),
        ({"jobId": JOB, "name": "x", "quantity": "lots"}, "quantity"),
        ({"jobId": JOB, "name": "x", "libItemId": 424242}, "libItemId"),
    ],
)
def test_jobitem_validation(sim: Sim, body: dict[str, object], field: str) -> None:
    response = sim.post("/api/jobitem", body)
    assert response.status_code == 400
    assert field in response.json()["messages"]["validation"]


def test_libitem_crud(sim: Sim) -> None:
    item = data(sim.post("/api/libitem", {"name": "Pipe", "code": "P-1", "type": "part"}))
    assert data(sim.get("/api/libitem", code="P-1"))["libItems"][0]["id"] == item["id"]
    assert data(sim.put(f"/api/libitem/{item['id']}", {"name": "Pipe 2"}))["name"] == "Pipe 2"


# --- comments and tags (§5.8, §5.9) -------------------------------------------------------------
def test_comments_are_filtered_by_entity(sim: Sim) -> None:
    on_invoice = data(
        sim.post(
            "/api/comment",
            {"entityType": 6, "entityId": INVOICE, "content": "Customer code missing"},
        )
    )
    assert on_invoice["entityType"] == 6 and on_invoice["entityId"] == INVOICE
    assert on_invoice["visibility"] == ["public"]
    assert on_invoice["author"]["id"] == API_USER
    data(
        sim.post(
            "/api/comment",
            {"entityType": 3, "entityId": JOB, "content": "job note", "visibility": ["tech"]},
        )
    )
    listed = data(sim.get("/api/comment", entityType=6, entityId=INVOICE))["comments"]
    assert [c["content"] for c in listed] == ["Customer code missing"]
    jobs = data(sim.get("/api/comment", entityType=3, entityId=JOB))["comments"]
    assert [c["content"] for c in jobs] == ["job note"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"entityType": 6, "entityId": 999999, "content": "x"}, "entityId"),
        ({"entityType": 99, "entityId": INVOICE, "content": "x"}, "entityType"),
        ({"entityType": 6, "entityId": INVOICE}, "content"),
        (
            {"entityType": 6, "entityId": INVOICE, "content": "x", "visibility": ["all"]},
            "visibility",
        ),
    ],
)
def test_comment_validation(sim: Sim, body: dict[str, object], field: str) -> None:
    response = sim.post("/api/comment", body)
    assert response.status_code == 400
    assert field in response.json()["messages"]["validation"]


def test_tag_create_or_return_and_attach(sim: Sim) -> None:
    first = data(sim.post("/api/tag", {"name": "pm:jdoe", "entityType": 3, "entityId": JOB}))
    again = data(sim.post("/api/tag", {"name": "pm:jdoe", "entityType": 3, "entityId": JOB}))
    assert again["id"] == first["id"]
    job = data(sim.get(f"/api/job/{JOB}"))
    assert job["tags"] == [{"id": first["id"], "name": "pm:jdoe"}]
    tagged = data(sim.get("/api/tag", entityType=3, entityId=JOB))["tags"]
    assert [t["name"] for t in tagged] == ["pm:jdoe"]
    assert [j["id"] for j in data(sim.get("/api/job", tag="pm:jdoe"))["jobs"]] == [JOB]
    assert data(sim.get("/api/job", tag="pm:jdoe,other"))["jobs"] == []
    assert sim.delete(f"/api/tag/{first['id']}").status_code == 200
    assert data(sim.get(f"/api/job/{JOB}"))["tags"] == []


# --- clock events and timecards (§5.6, §11) -----------------------------------------------------
def test_clock_events_list_and_filters(sim: Sim) -> None:
    events = data(sim.get("/api/clock", jobId=JOB))["events"]
    assert [e["id"] for e in events] == [8001, 8002]
    window = data(sim.get("/api/clock", userId=TECH, startTime=T0 - 3600, endTime=T0))["events"]
    assert [e["id"] for e in window] == [8002, 8003]
    assert [e["id"] for e in data(sim.get("/api/clock", activity="enroute"))["events"]] == [8003]


def test_timecard_list_filters(sim: Sim) -> None:
    approved = data(sim.get("/api/timecard", status="approved"))
    assert [t["id"] for t in approved["timecards"]] == [TIMECARD_APPROVED]
    in_window = data(sim.get("/api/timecard", approvedAfter=T0 - 3600, approvedBefore=T0 - 3600))
    assert [t["id"] for t in in_window["timecards"]] == [TIMECARD_APPROVED]
    assert data(sim.get("/api/timecard", approvedAfter=T0 - 3599))["timecards"] == []
    by_user = data(sim.get("/api/timecard", userId=TECH))["timecards"]
    assert {t["id"] for t in by_user} == {TIMECARD, TIMECARD_APPROVED}


def test_timecard_approval_via_put(sim: Sim) -> None:
    sim.clock.advance(10)
    card = data(sim.put(f"/api/timecard/{TIMECARD}", {"status": "approved"}))
    assert card["status"] == "approved"
    assert card["approvedOn"] == T0 + 10
    assert card["entries"][0]["kind"] == "labor"
    assert sim.put(f"/api/timecard/{TIMECARD}", {"status": "finished"}).status_code == 400
    assert sim.post("/api/timecard", {"status": "approved"}).status_code == 405


def test_timecard_user_carries_current_external_ids(sim: Sim) -> None:
    card = data(sim.get(f"/api/timecard/{TIMECARD_APPROVED}"))
    assert card["user"]["externalIds"] == {"spectrum": "E001"}
    assert card["user"]["name"] == "Sam Tech"
    data(sim.put(f"/api/externalid/user/{TECH}/spectrum", {"value": "E777"}))
    card = data(sim.get(f"/api/timecard/{TIMECARD_APPROVED}"))
    assert card["user"]["externalIds"] == {"spectrum": "E777"}


def test_users_and_service_lines_are_listed(sim: Sim) -> None:
    users = data(sim.get("/api/user", email="SAM@example.com"))["users"]
    assert [u["id"] for u in users] == [TECH]
    lines = data(sim.get("/api/serviceline"))["servicelines"]
    assert lines[0]["abbr"] == "SP"
