"""The per-process read cache of ServiceTrade facts (worker/readcache.py) and its invalidation.

Correctness first: a webhook about a record reaches the ingest, which stamps the record in Redis
before it enqueues anything; a cached copy read before that stamp is never served again.
"""

from __future__ import annotations

import json
from collections import Counter
from functools import partial
from typing import Any

import fakeredis
import pytest
import redis
from fastapi.testclient import TestClient

from ingest.app import create_ingest_app
from sandbox import credentials
from tasks.invoice import sync_invoice
from tasks.state import Result
from tasks.timecard import sync_timecard
from worker.readcache import LocalStamps, ReadCache, RedisStamps, mark_changed


class Loads:
    """A loader that counts its calls and returns the current value of a record."""

    def __init__(self) -> None:
        self.value = "v1"
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        return self.value


def test_a_hit_is_served_until_the_record_is_stamped_changed() -> None:
    stamps = LocalStamps()
    cache = ReadCache(60, stamps)
    load = Loads()
    assert cache.get("job", 7, load) == "v1"
    assert cache.get("job", 7, load) == "v1"
    assert load.calls == 1 and cache.hits == 1
    load.value = "v2"
    stamps.changed("job", 7)  # the webhook about job 7
    assert cache.get("job", 7, load) == "v2"
    assert load.calls == 2
    assert cache.get("job", 8, load) == "v2" and load.calls == 3  # other ids are separate


def test_a_change_during_the_read_is_not_trusted_afterwards() -> None:
    stamps = LocalStamps()
    cache = ReadCache(60, stamps)

    def load_while_edited() -> str:
        stamps.changed("location", 3)  # the edit's webhook lands while ServiceTrade answers
        return "old"

    assert cache.get("location", 3, load_while_edited) == "old"
    assert cache.get("location", 3, lambda: "new") == "new"


def test_expired_entries_are_read_again_and_ttl_zero_never_caches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import time

    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    monkeypatch.setattr(time, "time", lambda: now[0])  # shared copies age by wall time
    cache = ReadCache(30, LocalStamps())
    load = Loads()
    cache.get("user", 1, load)
    now[0] += 29
    cache.get("user", 1, load)
    assert load.calls == 1
    now[0] += 2
    cache.get("user", 1, load)
    assert load.calls == 2
    off = ReadCache(0, LocalStamps())
    off.get("user", 1, load)
    off.get("user", 1, load)
    assert load.calls == 4 and len(off) == 0


def test_fresh_reads_refresh_the_entry_and_the_size_is_bounded() -> None:
    cache = ReadCache(60, LocalStamps(), max_entries=2)
    cache.get("job", 1, lambda: "a")
    assert cache.refresh("job", 1, lambda: "b") == "b"  # a record's own sync reads fresh
    assert cache.get("job", 1, lambda: "c") == "b"
    cache.get("job", 2, lambda: "x")
    cache.get("job", 3, lambda: "y")
    assert len(cache) == 2
    # the least recently used left this process (the shared copy still serves it)
    assert cache.get("job", 1, lambda: "d") == "b" and cache.shared_hits == 1


def test_worker_processes_share_entries_under_the_same_stamps() -> None:
    r = fakeredis.FakeRedis()
    one, two = ReadCache(60, RedisStamps(r, "p:")), ReadCache(60, RedisStamps(r, "p:"))
    load = Loads()
    assert one.get("job", 4, load) == "v1"
    assert two.get("job", 4, load) == "v1"  # the other process's read, through Redis
    assert load.calls == 1 and two.shared_hits == 1
    load.value = "v2"
    pipe = r.pipeline()
    mark_changed(pipe, "p:", [("job", 4)], 60)  # the ingest, on the edit's webhook
    pipe.execute()
    assert two.get("job", 4, load) == "v2"
    assert one.get("job", 4, load) == "v2"  # its own copy is stale too
    assert load.calls == 2  # one re-read, shared again


def test_unreadable_stamps_mean_fresh_reads_and_nothing_kept() -> None:
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    cache = ReadCache(60, RedisStamps(dead))
    load = Loads()
    assert cache.get("job", 1, load) == "v1"
    assert cache.get("job", 1, load) == "v1"
    assert load.calls == 2 and len(cache) == 0


class CountingStamps(RedisStamps):
    """Redis stamps that count the round trips of look-ups."""

    def __init__(self, client: Any, prefix: str = "") -> None:
        super().__init__(client, prefix)
        self.round_trips = 0

    def lookup(self, key: str) -> tuple[str | None, str | None]:
        self.round_trips += 1
        return super().lookup(key)

    def lookup_many(self, keys: Any) -> list[tuple[str | None, str | None]]:
        self.round_trips += 1
        return super().lookup_many(keys)


def test_prefetched_lookups_take_one_round_trip_and_serve_what_singles_would() -> None:
    r = fakeredis.FakeRedis()
    writer = ReadCache(60, RedisStamps(r, "p:"))
    for resource, eid, value in (("job", 1, "j1"), ("location", 2, "l2"), ("user", 3, "u3")):
        writer.get(resource, eid, partial(str, value))  # another process read and shared them
    pipe = r.pipeline()
    mark_changed(pipe, "p:", [("user", 3)], 60)  # the user was edited since
    pipe.execute()
    stamps = CountingStamps(r, "p:")
    cache = ReadCache(60, stamps)
    load = Loads()
    with cache.prefetched([("job", 1), ("location", 2), ("user", 3), ("job", 1)]):
        assert cache.get("job", 1, load) == "j1"
        assert cache.get("location", 2, load) == "l2"
        assert cache.get("user", 3, load) == "v1"  # stale shared copy: read afresh
    assert stamps.round_trips == 1 and cache.shared_hits == 2 and load.calls == 1
    # the stamp read by the prefetch guards what it stored, as a single look-up's would
    assert ReadCache(60, RedisStamps(r, "p:")).get("user", 3, load) == "v1" and load.calls == 1


def test_what_a_block_prefetched_and_did_not_use_is_forgotten_at_its_end() -> None:
    stamps = LocalStamps()
    cache = ReadCache(60, stamps)
    load = Loads()
    cache.get("job", 5, load)
    with cache.prefetched([("job", 5)]):
        pass
    load.value = "v2"
    stamps.changed("job", 5)  # the edit's webhook after the block
    assert cache.get("job", 5, load) == "v2"  # its own look-up sees the new stamp
    with cache.prefetched([("job", 5)]):
        assert cache.get("job", 5, load) == "v2"
        stamps.changed("job", 5)
        assert cache.get("job", 5, load) == "v2" and load.calls == 3  # used once, then its own


def test_unreadable_stamps_in_a_prefetch_mean_fresh_reads_and_nothing_kept() -> None:
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    cache = ReadCache(60, RedisStamps(dead))
    load = Loads()
    with cache.prefetched([("job", 1), ("location", 1)]):
        assert cache.get("job", 1, load) == "v1"
        assert cache.get("location", 1, load) == "v1"
    assert load.calls == 2 and len(cache) == 0


def test_stamps_are_unique_and_outlive_the_entries() -> None:
    r = fakeredis.FakeRedis()
    pipe = r.pipeline()
    assert mark_changed(pipe, "p:", [("job", 5), ("invoice", 6), ("job", 5)], 120) == 2
    pipe.execute()
    stamps = RedisStamps(r, "p:")
    first = stamps.current(["job:5"])[0]
    assert first is not None and stamps.current(["invoice:6"]) == [None]
    assert r.ttl("p:stsync:readcache:stamp:job:5") > 120
    pipe = r.pipeline()
    mark_changed(pipe, "p:", [("job", 5)], 120)
    pipe.execute()
    assert stamps.current(["job:5"])[0] not in (None, first)


# --- end to end in process: ingest + worker context on one Redis ---------------------------------
@pytest.fixture
def shared_redis() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis()


@pytest.fixture
def cached_ctx(ctx: Any, shared_redis: fakeredis.FakeRedis) -> Any:
    """The test context with the worker's read cache, its stamps in the ingest's Redis."""
    ctx.st.read_cache = ReadCache(120, RedisStamps(shared_redis, ctx.settings.redis_key_prefix))
    return ctx


def _webhook(settings: Any, r: Any, entity: str, entity_id: int, message_id: str) -> None:
    sent: list[Any] = []
    app = create_ingest_app(
        settings, redis_client=r, send=lambda n, a: sent.append((n, a)), ledger_ping=lambda: None
    )
    body = {
        "messageId": message_id,
        "timestamp": "1",
        "data": [
            {"action": "updated", "timestamp": 1, "entity": {"type": entity, "id": entity_id}}
        ],
    }
    resp = TestClient(app).post(
        f"/webhooks/servicetrade/{credentials.WEBHOOK_SECRET}",
        content=json.dumps(body),
        headers={"content-type": "application/json"},
    )
    assert resp.status_code == 202


def _reads(st_app: Any) -> Counter[str]:
    return Counter(st_app.state.injector.calls)


def test_a_webhook_for_the_job_invalidates_it_before_the_invoice_sync_reads_it(
    cached_ctx: Any, world: Any, st_state: Any, st_app: Any, shared_redis: Any
) -> None:
    ctx = cached_ctx
    inv_id = world.landmarks["invoice_salesperson_without_id"]
    job_id = world.landmarks["invoice_salesperson_without_id_job"]
    good = next(
        j["salesperson"]
        for j in world.servicetrade["job"]
        if j.get("salesperson")
        and j["id"] != job_id
        and j["salesperson"]["id"] != world.landmarks["salesperson_without_spectrum_id"]
    )
    assert sync_invoice(ctx, inv_id, "main").result == "failed"  # the job's salesperson has no code
    jobs_read = _reads(st_app)["job"]
    # approved again without a fix: the job facts come from the cache (no job read)
    st_state.update("invoice", inv_id, {"status": "pending_accounting"})
    assert sync_invoice(ctx, inv_id, "main").result == "failed"
    assert _reads(st_app)["job"] == jobs_read
    # a person gives the job a salesperson with a code; ServiceTrade's webhook reaches the ingest
    st_state.update("job", job_id, {"salesperson": good})
    _webhook(ctx.settings, shared_redis, "job", job_id, "edit-1")
    st_state.update("invoice", inv_id, {"status": "pending_accounting"})
    out = sync_invoice(ctx, inv_id, "main")
    assert out.result == "synced", out.message
    assert _reads(st_app)["job"] == jobs_read + 1  # read afresh, once
    assert st_state.get("invoice", inv_id)["status"] == "processed"


def test_an_approved_invoice_reads_servicetrade_at_most_three_times_in_steady_state(
    cached_ctx: Any, world: Any, st_app: Any
) -> None:
    from tasks.job import sync_job

    ctx = cached_ctx
    approved = [
        i
        for i in world.servicetrade["invoice"]
        if i["status"] == "pending_accounting"
        and i["id"] not in (world.landmarks["invoice_salesperson_without_id"],)
    ]
    for job_id in sorted({i["job"]["id"] for i in approved}):
        sync_job(ctx, job_id, "main")  # the jobs are in Spectrum (and their facts read)
    before = _reads(st_app)
    results = Counter(sync_invoice(ctx, i["id"], "main").result for i in approved)
    calls = _reads(st_app) - before
    posted = results[Result.SYNCED]
    assert posted >= 3
    # read once + the processed write-back; failures add their comment and status
    per_posted = (calls["invoice"] + calls["job"] + calls["location"] + calls["user"]) / len(
        approved
    )
    assert per_posted <= 3.0, (calls, results)
    assert calls["job"] == 0 and calls["location"] == 0  # served from the cache


def test_an_invoice_looks_its_facts_up_in_two_round_trips(
    ctx: Any, world: Any, st_app: Any, shared_redis: Any
) -> None:
    from tasks.job import sync_job

    stamps = CountingStamps(shared_redis, ctx.settings.redis_key_prefix)
    ctx.st.read_cache = ReadCache(120, stamps)
    invoice = next(
        i
        for i in world.servicetrade["invoice"]
        if i["status"] == "pending_accounting"
        and i["id"] != world.landmarks["invoice_salesperson_without_id"]
        and next(j for j in world.servicetrade["job"] if j["id"] == i["job"]["id"]).get(
            "salesperson"
        )
    )
    sync_job(ctx, invoice["job"]["id"], "main")
    before, reads = stamps.round_trips, _reads(st_app)
    out = sync_invoice(ctx, invoice["id"], "main")
    assert out.result == "synced", out.message
    # job (with the invoice's location), then the salesperson (with the job's location when the
    # invoice names none): two look-ups instead of one per fact
    assert stamps.round_trips - before == 2
    assert (_reads(st_app) - reads)["job"] == 0


def test_timecard_job_facts_are_read_once_per_job(cached_ctx: Any, world: Any, st_app: Any) -> None:
    from tasks.job import sync_job

    ctx = cached_ctx
    cards = [
        tc for tc in world.servicetrade["timecard"] if tc["user"]["externalIds"].get("spectrum")
    ]
    jobs = {e["job"]["id"] for tc in cards for e in tc["entries"] if e.get("job")}
    for job_id in sorted(jobs):
        sync_job(ctx, job_id, "main")
    before = _reads(st_app)
    for tc in cards:
        sync_timecard(ctx, tc["id"], "main")
    calls = _reads(st_app) - before
    assert calls["job"] == 0 and calls["location"] == 0  # sync_job's fresh reads filled it
