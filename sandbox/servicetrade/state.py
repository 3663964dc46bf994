"""The simulator's in-memory ServiceTrade account: every record, behind one lock.

Records are stored as the API returns them (camelCase dicts with ``id`` and ``uri``). A stored
record is never mutated in place: every change builds a new top-level dict, and nested values are
fresh objects, so a reader that took a record under the lock may serialise it after releasing it.
Plain-Python accessors (``get``/``all``/``create``/``update``/``delete``) copy at the boundary;
the HTTP layer uses the no-copy internals (``peek``/``scan``/``insert``/``patch``/``remove``) while
holding ``lock``.

Every mutation (API or test code) is announced to the listeners (the webhook emitter) as a
``ChangeEvent``, in commit order.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sandbox.servicetrade import assumptions, records

DEFAULT_BASE_URL = "http://127.0.0.1:8801"
INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class ChangeEvent:
    """One committed mutation, as the webhook emitter needs it (reference §7)."""

    action: str  # created | updated | deleted
    resource: str
    id: int
    uri: str
    user_id: int | None
    timestamp: int
    changeset: tuple[dict[str, Any], ...]


Listener = Callable[[ChangeEvent], None]


class STState:
    """Thread-safe in-memory store of all ServiceTrade resources."""

    def __init__(
        self,
        *,
        first_id: int = 1000,
        base_url: str = DEFAULT_BASE_URL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._lock = threading.RLock()
        self._first_id = first_id
        self._base_url = base_url.rstrip("/")
        #: the time source for ``created``/``updated``/event timestamps; tests may replace it
        self.clock = clock
        self._listeners: list[Listener] = []
        self._data: dict[str, dict[int, dict[str, Any]]] = {r: {} for r in records.RESOURCES}
        self._seed: dict[str, list[dict[str, Any]]] = {}
        self._next_id = first_id
        self._next_job_number = assumptions.FIRST_JOB_NUMBER
        #: bumped on every mutation; lets callers cache derived lookups
        self.version = 0

    # --- plumbing -------------------------------------------------------------------------------
    @property
    def lock(self) -> threading.RLock:
        return self._lock

    @property
    def base_url(self) -> str:
        return self._base_url

    def now(self) -> int:
        return int(self.clock())

    def set_base_url(self, base_url: str) -> None:
        """Serve under another base URL: rewrites every ``uri`` that was built for the old one."""
        new = base_url.rstrip("/")
        with self._lock:
            old = self._base_url
            if new == old:
                return
            self._base_url = new
            for resource, table in self._data.items():
                for id_, rec in list(table.items()):
                    if rec.get("uri") == records.uri_of(old, resource, id_):
                        table[id_] = {**rec, "uri": records.uri_of(new, resource, id_)}
            for resource, items in self._seed.items():
                for i, rec in enumerate(items):
                    if rec.get("uri") == records.uri_of(old, resource, rec["id"]):
                        items[i] = {**rec, "uri": records.uri_of(new, resource, rec["id"])}

    def add_listener(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def new_id(self) -> int:
        with self._lock:
            id_ = self._next_id
            self._next_id += 1
            return id_

    def next_job_number(self) -> int:
        with self._lock:
            number = self._next_job_number
            self._next_job_number += 1
            return number

    def _see_id(self, id_: int) -> None:
        if id_ >= self._next_id:
            self._next_id = id_ + 1

    # --- seed and reset -------------------------------------------------------------------------
    def load(self, seed: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        """Add seed records (keys are singular resource names, items as the API returns them).

        Fills ``uri``/``created``/``updated`` (and invoice money, job numbers, sub-item ids) when
        absent, keeps ids, and remembers the seed so ``reset()`` can return to it. Emits no events.
        """
        with self._lock:
            for resource in seed:
                records.check_resource(resource)
            for resource, items in seed.items():
                for raw in items:
                    rec = self._normalize_new(resource, copy.deepcopy(dict(raw)), keep_id=True)
                    self._store(resource, rec)
                    self._seed.setdefault(resource, []).append(copy.deepcopy(rec))
            self._sort_tables()
            self.version += 1

    def reset(self) -> None:
        """Back to what ``load()`` put in (empty if nothing was loaded); counters restart."""
        with self._lock:
            self._data = {r: {} for r in records.RESOURCES}
            self._next_id = self._first_id
            self._next_job_number = assumptions.FIRST_JOB_NUMBER
            for resource, items in self._seed.items():
                for rec in items:
                    self._store(resource, copy.deepcopy(rec))
            self._sort_tables()
            self.version += 1

    def _sort_tables(self) -> None:
        for resource, table in self._data.items():
            keys = list(table)
            if keys != sorted(keys):
                self._data[resource] = dict(sorted(table.items()))

    def _store(self, resource: str, rec: dict[str, Any]) -> None:
        id_ = rec["id"]
        self._see_id(id_)
        if resource == "job" and isinstance(rec.get("number"), int):
            self._next_job_number = max(self._next_job_number, rec["number"] + 1)
        table = self._data[resource]
        out_of_order = bool(table) and id_ not in table and id_ < next(reversed(table))
        table[id_] = rec
        if out_of_order:
            self._data[resource] = dict(sorted(table.items()))

    def _normalize_new(
        self, resource: str, rec: dict[str, Any], *, keep_id: bool
    ) -> dict[str, Any]:
        """Fill what a freshly stored record must have (ids, uri, timestamps, derived fields)."""
        if keep_id and rec.get("id") is not None:
            id_ = rec["id"]
            if isinstance(id_, bool) or not isinstance(id_, int) or not 0 < id_ <= INT64_MAX:
                raise ValueError(f"{resource} id must be a positive int64, got {id_!r}")
        else:
            rec["id"] = self.new_id()
        now = self.now()
        if not rec.get("uri"):
            rec["uri"] = records.uri_of(self._base_url, resource, rec["id"])
        rec.setdefault("created", now)
        rec.setdefault("updated", rec["created"])
        if resource == "job" and rec.get("number") is None:
            rec["number"] = self.next_job_number()
        if resource == "invoice":
            items = []
            for item in rec.get("items") or []:
                item = dict(item)
                if item.get("id") is None:
                    item["id"] = self.new_id()
                else:
                    self._see_id(item["id"])
                items.append(item)
            rec["items"] = items
            rec = records.fill_invoice_money(rec)
        if resource == "timecard":
            entries = []
            for entry in rec.get("entries") or []:
                entry = dict(entry)
                if entry.get("id") is None:
                    entry["id"] = self.new_id()
                else:
                    self._see_id(entry["id"])
                entries.append(entry)
            rec["entries"] = entries
        if resource in records.ENTITY_TYPES or resource in assumptions.EXTERNAL_ID_ENTITY_TYPES:
            rec.setdefault("externalIds", {})
        # id and uri first, as the API shows them
        return {"id": rec["id"], "uri": rec["uri"], **rec}

    # --- no-copy internals (hold ``lock``; never mutate what they return) -------------------------
    def peek(self, resource: str, id_: int) -> dict[str, Any] | None:
        return self._data[resource].get(id_)

    def scan(self, resource: str) -> Iterable[dict[str, Any]]:
        """The stored records of a resource in id order."""
        return self._data[resource].values()

    def insert(
        self, resource: str, rec: dict[str, Any], *, user_id: int | None = None
    ) -> dict[str, Any]:
        """Store a new record (takes ownership of ``rec``) and announce ``created``."""
        with self._lock:
            rec = self._normalize_new(resource, rec, keep_id=True)
            if rec["id"] in self._data[resource]:
                raise ValueError(f"{resource} {rec['id']} already exists")
            self._store(resource, rec)
            self.version += 1
            self._emit("created", resource, rec, None, user_id)
            return rec

    def patch(
        self, resource: str, id_: int, changes: Mapping[str, Any], *, user_id: int | None = None
    ) -> dict[str, Any]:
        """Replace top-level fields (``externalIds`` merge) and announce ``updated`` if anything
        changed. ``KeyError`` if the record does not exist."""
        with self._lock:
            old = self._data[resource].get(id_)
            if old is None:
                raise KeyError(f"{resource} {id_} not found")
            new = dict(old)
            for key, value in changes.items():
                if key in ("id", "uri"):
                    continue
                if key == "externalIds" and isinstance(value, Mapping):
                    new[key] = merge_external_ids(old.get("externalIds"), value)
                else:
                    new[key] = value
            new = self._derive_on_update(resource, old, new, changes)
            if assumptions.NO_OP_UPDATES_EMIT_NOTHING and {
                k: v for k, v in new.items() if k != "updated"
            } == {k: v for k, v in old.items() if k != "updated"}:
                return old
            if "updated" not in changes:
                new["updated"] = max(self.now(), int(old.get("updated") or 0))
            self._data[resource][id_] = new
            self.version += 1
            self._emit("updated", resource, new, old, user_id)
            return new

    def remove(self, resource: str, id_: int, *, user_id: int | None = None) -> dict[str, Any]:
        """Delete a record and announce ``deleted``. ``KeyError`` if it does not exist."""
        with self._lock:
            old = self._data[resource].pop(id_, None)
            if old is None:
                raise KeyError(f"{resource} {id_} not found")
            self.version += 1
            self._emit("deleted", resource, old, None, user_id)
            return old

    def _derive_on_update(
        self,
        resource: str,
        old: Mapping[str, Any],
        new: dict[str, Any],
        changes: Mapping[str, Any],
    ) -> dict[str, Any]:
        if resource == "invoice":
            if "items" in changes:
                items = []
                for item in new.get("items") or []:
                    item = dict(item)
                    if item.get("id") is None:
                        item["id"] = self.new_id()
                    items.append(records.price_item(item))
                new["items"] = items
                for key, value in records.invoice_totals(items).items():
                    if key not in changes:
                        new[key] = value
            status = new.get("status")
            if status != old.get("status"):
                if status == "paid":
                    new["isPaid"] = True
                if status == "sent":
                    new["isSent"] = True
        if (
            resource == "timecard"
            and assumptions.TIMECARD_STAMP_APPROVED_ON
            and new.get("status") != old.get("status")
            and "approvedOn" not in changes
        ):
            new["approvedOn"] = self.now() if new.get("status") == "approved" else None
        return new

    def _emit(
        self,
        action: str,
        resource: str,
        rec: Mapping[str, Any],
        old: Mapping[str, Any] | None,
        user_id: int | None,
    ) -> None:
        if not self._listeners:
            return
        event = ChangeEvent(
            action=action,
            resource=resource,
            id=rec["id"],
            uri=str(rec.get("uri") or records.uri_of(self._base_url, resource, rec["id"])),
            user_id=user_id,
            timestamp=self.now(),
            changeset=tuple(assumptions.changeset_for(action, old, rec)),
        )
        for listener in list(self._listeners):
            listener(event)

    def render(self, resource: str, rec: Mapping[str, Any]) -> dict[str, Any]:
        """The record as the API returns it: embedded refs refreshed from the records they name."""
        fields = records.REF_FIELDS.get(resource)
        out = dict(rec)
        if not fields:
            return out
        for field, target_resource in fields.items():
            ref = rec.get(field)
            if not isinstance(ref, Mapping):
                continue
            target_id = ref.get("id")
            table = self._data[target_resource]
            target = table.get(target_id) if isinstance(target_id, int) else None
            if target is None:
                continue
            always = records.ALWAYS_REF_KEYS.get((resource, field), ())
            fresh = dict(ref)
            for key in records.REFRESHED_REF_KEYS:
                if (key in ref or key in always) and key in target:
                    fresh[key] = target[key]
            for key in always:
                if key not in fresh:
                    fresh[key] = target.get(key, {} if key == "externalIds" else None)
            out[field] = fresh
        return out

    # --- public, copying accessors (tests, benchmarks, chaos checks) ----------------------------
    def get(self, resource: str, id: int) -> dict[str, Any] | None:  # noqa: A002
        records.check_resource(resource)
        with self._lock:
            rec = self._data[resource].get(id)
            return None if rec is None else copy.deepcopy(self.render(resource, rec))

    def all(self, resource: str) -> list[dict[str, Any]]:
        records.check_resource(resource)
        with self._lock:
            return [copy.deepcopy(self.render(resource, r)) for r in self._data[resource].values()]

    def create(
        self, resource: str, obj: Mapping[str, Any], *, user_id: int | None = None
    ) -> dict[str, Any]:
        """Add a record given in API response shape (like ``load``), emitting ``created``."""
        records.check_resource(resource)
        rec = self.insert(resource, copy.deepcopy(dict(obj)), user_id=user_id)
        with self._lock:
            return copy.deepcopy(self.render(resource, rec))

    def update(
        self,
        resource: str,
        id: int,
        changes: Mapping[str, Any],
        *,
        user_id: int | None = None,  # noqa: A002
    ) -> dict[str, Any]:
        """Change top-level fields (``externalIds`` are merged), emitting ``updated``.

        No API validation (test code may force any status); invoice money is recomputed when
        ``items`` change and approving a timecard stamps ``approvedOn``. ``KeyError`` if absent.
        """
        records.check_resource(resource)
        rec = self.patch(resource, id, copy.deepcopy(dict(changes)), user_id=user_id)
        with self._lock:
            return copy.deepcopy(self.render(resource, rec))

    def delete(self, resource: str, id: int) -> None:  # noqa: A002
        """Remove a record, emitting ``deleted``. ``KeyError`` if absent."""
        records.check_resource(resource)
        self.remove(resource, id)


def merge_external_ids(
    current: Mapping[str, Any] | None, changes: Mapping[str, Any]
) -> dict[str, str]:
    """§6 [A]: merge ``changes`` into an ``externalIds`` map; an empty value removes the key."""
    out = {str(k): str(v) for k, v in (current or {}).items()}
    for key, value in changes.items():
        if value is None or value == assumptions.EXTERNAL_ID_REMOVE_VALUE:
            out.pop(str(key), None)
        else:
            out[str(key)] = str(value)
    return out
