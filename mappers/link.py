"""Day-one linking (F22): which existing Spectrum record a ServiceTrade record already is. Pure.

``stsync link`` (``cli/link.py``) feeds these the records of both systems; nothing here reads or
writes. A ServiceTrade record is

- ``matched`` when exactly one Spectrum record has the same normalised key (customers and sites:
  name and address; jobs: the number stsync would give it, else the same digits);
- ``ambiguous`` when several do (a person picks: set the external id by hand);
- ``new`` when none does (the first sync creates it).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from mappers.customer import match_key

Verdict = Literal["matched", "ambiguous", "new", "linked"]


@dataclass(frozen=True)
class Link:
    """The verdict for one ServiceTrade record."""

    kind: str  # customer | site | job
    st_id: int
    label: str
    verdict: Verdict
    codes: tuple[str, ...] = ()
    #: the matched Spectrum row (for the ledger row the apply step writes)
    row: Mapping[str, Any] = field(default_factory=dict)

    @property
    def code(self) -> str | None:
        return self.codes[0] if self.verdict in ("matched", "linked") and self.codes else None


class KeyIndex:
    """Spectrum rows indexed by a normalised key (built once, looked up per ServiceTrade record)."""

    def __init__(
        self, rows: Iterable[Mapping[str, Any]], key: Callable[[Mapping[str, Any]], str]
    ) -> None:
        self._by: dict[str, list[Mapping[str, Any]]] = {}
        for row in rows:
            k = key(row)
            if k:
                self._by.setdefault(k, []).append(row)

    def get(self, key: str) -> list[Mapping[str, Any]]:
        return list(self._by.get(key, [])) if key else []


def name_address_key(columns: tuple[str, tuple[str, ...]]) -> Callable[[Mapping[str, Any]], str]:
    """The key function of customers (``CUSTOMER_MATCH``) or sites (``SITE_MATCH``) rows."""

    def key(values: Mapping[str, Any]) -> str:
        name = match_key(values, columns)
        return "" if name.startswith("|") else name  # a blank name identifies nothing

    return key


def verdict(
    kind: str, st_id: int, label: str, found: Sequence[Mapping[str, Any]], code_column: str
) -> Link:
    codes = tuple(sorted(str(r.get(code_column) or "").strip() for r in found))
    if not found:
        return Link(kind, st_id, label, "new")
    if len(found) > 1:
        return Link(kind, st_id, label, "ambiguous", codes)
    return Link(kind, st_id, label, "matched", codes, dict(found[0]))


def digits(text: object) -> str:
    """The digits of a job number (``T-52311`` and ``52311A`` both give ``52311``)."""
    return "".join(re.findall(r"\d+", str(text or "")))


def job_candidates(
    st_number: int,
    our_number: str | None,
    by_number: Mapping[str, Mapping[str, Any]],
    by_digits: KeyIndex,
) -> list[Mapping[str, Any]]:
    """Spectrum jobs that a ServiceTrade job already is: the number stsync would give it, else
    the jobs whose number has the same digits as the ServiceTrade job number."""
    if our_number and our_number in by_number:
        return [by_number[our_number]]
    return by_digits.get(str(st_number))
