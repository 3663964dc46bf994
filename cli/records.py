"""ServiceTrade records by type, for the commands that name or list them (sync --now, backfill)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from clients.errors import NotFound


class RecordNotInServiceTrade(NotFound):
    """The record a person named does not exist in ServiceTrade."""


def _getter(ctx: Any, entity: str) -> Callable[[int], Any]:
    st = ctx.st
    getters: dict[str, Callable[[int], Any]] = {
        "company": st.get_company,
        "location": st.get_location,
        "job": st.get_job,
        "invoice": st.get_invoice,
        "timecard": st.get_timecard,
    }
    return getters[entity]


def require_in_servicetrade(ctx: Any, entity: str, record_id: int) -> None:
    """RecordNotInServiceTrade naming the record when ServiceTrade does not have it."""
    try:
        _getter(ctx, entity)(record_id)
    except NotFound:
        raise RecordNotInServiceTrade(
            f"ServiceTrade has no {entity} {record_id} (check the id and the account)",
            field="id",
            value=record_id,
        ) from None


def list_ids_since(
    ctx: Any, entity: str, since: int, until: int, on_page: Callable[[int], None] | None = None
) -> Iterator[int]:
    """Ids of the ``entity`` records ServiceTrade lists as changed since ``since`` (epoch seconds);
    timecards: approved in ``[since, until]``. Same listings (and filters) as the sweep."""
    from clients.servicetrade import assumptions as st_assumptions
    from tasks.sweep import LIST_PARAMS

    if entity == "timecard":
        for cards in ctx.st.iter_timecard_pages(since, until):
            if on_page:
                on_page(len(cards))
            yield from (tc.id for tc in cards)
        return
    params = {"updatedAfter": since, **LIST_PARAMS.get(entity, {})}
    for page in ctx.st.iter_pages(entity, st_assumptions.PLURAL_KEYS[entity], params):
        ids = [int(raw["id"]) for raw in page if str(raw.get("id", "")).isdigit()]
        if on_page:
            on_page(len(ids))
        yield from ids
