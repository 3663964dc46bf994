"""ServiceTrade simulator: the ``STState`` store's Python API (used by seeds, tests and chaos checks)."""

from __future__ import annotations

import threading

import pytest

from sandbox.servicetrade.state import ChangeEvent, STState
from tests.sandbox.test_servicetrade_support import BIG_ID, T0, Clock


def test_load_fills_uri_and_timestamps_and_keeps_ids() -> None:
    state = STState(base_url="http://st.test", clock=Clock())
    state.load({"company": [{"id": 42, "name": "A"}, {"id": 7, "name": "B", "created": 5}]})
    a = state.get("company", 42)
    assert a == {
        "id": 42,
        "uri": "http://st.test/api/company/42",
        "name": "A",
        "created": T0,
        "updated": T0,
        "externalIds": {},
    }
    b = state.get("company", 7)
    assert b is not None and b["created"] == 5 and b["updated"] == 5
    # lists are in id order
    assert [c["id"] for c in state.all("company")] == [7, 42]


def test_created_ids_continue_above_the_max_across_resources() -> None:
    state = STState(first_id=1000)
    state.load({"job": [{"id": 5000, "number": 17}], "company": [{"id": BIG_ID, "name": "Big"}]})
    created = state.create("location", {"name": "L"})
    assert created["id"] == BIG_ID + 1
    job = state.create("job", {"name": "J"})
    assert job["number"] == 18


def test_first_id_is_used_when_nothing_is_bigger() -> None:
    state = STState(first_id=1000)
    assert state.create("company", {"name": "A"})["id"] == 1000
    assert state.create("job", {"name": "J"})["id"] == 1001


def test_accessors_return_copies() -> None:
    state = STState()
    state.load({"company": [{"id": 1, "name": "A", "address": {"city": "Durham"}}]})
    copy = state.get("company", 1)
    assert copy is not None
    copy["address"]["city"] = "Elsewhere"
    state.all("company")[0]["name"] = "Changed"
    assert state.get("company", 1) == {**copy, "address": {"city": "Durham"}, "name": "A"}


def test_unknown_resource_and_missing_records() -> None:
    state = STState()
    with pytest.raises(ValueError, match="unknown ServiceTrade resource"):
        state.all("office")
    with pytest.raises(ValueError, match="unknown ServiceTrade resource"):
        state.load({"offices": []})
    with pytest.raises(KeyError):
        state.update("job", 1, {"name": "x"})
    with pytest.raises(KeyError):
        state.delete("job", 1)
    with pytest.raises(ValueError, match="int64"):
        state.load({"job": [{"id": 2**63}]})
    assert state.get("job", 1) is None


def test_listeners_see_events_in_commit_order_with_changesets() -> None:
    clock = Clock()
    state = STState(clock=clock)
    events: list[ChangeEvent] = []
    state.add_listener(events.append)
    job = state.create("job", {"name": "J", "status": "scheduled"}, user_id=9)
    clock.advance(30)
    state.update("job", job["id"], {"status": "completed"})
    state.update("job", job["id"], {"status": "completed"})  # no change, no event
    state.delete("job", job["id"])
    assert [(e.action, e.resource, e.id, e.user_id) for e in events] == [
        ("created", "job", job["id"], 9),
        ("updated", "job", job["id"], None),
        ("deleted", "job", job["id"], None),
    ]
    assert events[1].changeset == (
        {"field": "status", "oldValue": "scheduled", "newValue": "completed"},
    )
    assert events[1].timestamp == T0 + 30
    assert events[0].uri.endswith(f"/api/job/{job['id']}")


def test_update_bumps_updated_and_merges_external_ids() -> None:
    clock = Clock()
    state = STState(clock=clock)
    state.load({"company": [{"id": 1, "name": "A", "externalIds": {"spectrum": "C1"}}]})
    clock.advance(60)
    out = state.update("company", 1, {"externalIds": {"other": "X"}})
    assert out["updated"] == T0 + 60
    assert out["externalIds"] == {"spectrum": "C1", "other": "X"}
    out = state.update("company", 1, {"externalIds": {"spectrum": ""}})
    assert out["externalIds"] == {"other": "X"}


def test_invoice_money_is_filled_on_load_and_recomputed_on_item_change() -> None:
    state = STState()
    state.load(
        {
            "invoice": [
                {
                    "id": 1,
                    "status": "ok",
                    "items": [{"description": "a", "quantity": 3, "price": 10, "taxRate": 5}],
                }
            ]
        }
    )
    invoice = state.get("invoice", 1)
    assert invoice is not None
    assert (invoice["subtotal"], invoice["taxAmount"], invoice["totalPrice"]) == (30.0, 1.5, 31.5)
    assert isinstance(invoice["items"][0]["id"], int)
    out = state.update("invoice", 1, {"items": [{"quantity": 1, "price": 99.99}]})
    assert (out["subtotal"], out["taxAmount"], out["totalPrice"]) == (99.99, 0.0, 99.99)
    # given totals are kept on load (a seed may be deliberately inconsistent)
    state.load({"invoice": [{"id": 2, "items": [], "totalPrice": 5.0}]})
    assert state.get("invoice", 2)["totalPrice"] == 5.0  # type: ignore[index]


def test_approving_a_timecard_stamps_approved_on() -> None:
    clock = Clock()
    state = STState(clock=clock)
    state.load(
        {
            "timecard": [
                {
                    "id": 1,
                    "status": "submitted",
                    "workDate": 0,
                    "user": {"id": 2},
                    "entries": [{"kind": "generic", "label": "PTO", "hours": 8}],
                }
            ]
        }
    )
    assert isinstance(state.get("timecard", 1)["entries"][0]["id"], int)  # type: ignore[index]
    clock.advance(5)
    assert state.update("timecard", 1, {"status": "approved"})["approvedOn"] == T0 + 5
    assert state.update("timecard", 1, {"status": "rejected"})["approvedOn"] is None


def test_reset_returns_to_the_loaded_seed() -> None:
    state = STState(first_id=100)
    state.load({"company": [{"id": 1, "name": "Seed"}]})
    state.create("company", {"name": "Extra"})
    state.update("company", 1, {"name": "Changed"})
    state.reset()
    assert [c["name"] for c in state.all("company")] == ["Seed"]
    assert state.create("company", {"name": "Again"})["id"] == 100


def test_set_base_url_rewrites_generated_uris_only() -> None:
    state = STState(base_url="http://a")
    state.load({"job": [{"id": 1}, {"id": 2, "uri": "https://api.servicetrade.com/api/job/2"}]})
    state.set_base_url("http://b:9")
    assert state.get("job", 1)["uri"] == "http://b:9/api/job/1"  # type: ignore[index]
    assert state.get("job", 2)["uri"] == "https://api.servicetrade.com/api/job/2"  # type: ignore[index]
    state.reset()
    assert state.get("job", 1)["uri"] == "http://b:9/api/job/1"  # type: ignore[index]


def test_concurrent_creates_get_unique_ids() -> None:
    state = STState()
    ids: list[int] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(200):
            rec = state.create("comment", {"content": "x"})
            with lock:
                ids.append(rec["id"])

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == len(set(ids)) == 800
    assert len(state.all("comment")) == 800
