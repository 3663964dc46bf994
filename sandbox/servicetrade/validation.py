"""Reading request bodies and query strings the way ServiceTrade answers about them (§2).

Problems are collected per field and raised together as one 400 whose
``messages.validation`` maps each field to its message and ``messages.error`` lists them all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from sandbox.servicetrade import records

INT64_MAX = 2**63 - 1


class ApiError(Exception):
    """An error answer in the ServiceTrade envelope (§2)."""

    def __init__(
        self,
        status: int,
        errors: Sequence[str],
        validation: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__("; ".join(errors))
        self.status = status
        self.errors = list(errors)
        self.validation = dict(validation or {})
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        messages: dict[str, Any] = {"error": self.errors}
        if self.validation:
            messages["validation"] = self.validation
        return {"messages": messages, "data": None}


def invalid(field: str, message: str) -> ApiError:
    return ApiError(400, [message], {field: message})


def parse_id(value: Any) -> int | None:
    """An id given as a JSON integer or a digit string (JS clients keep 16-digit ids as strings)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        out = value
    elif isinstance(value, str) and value.strip().isdigit():
        out = int(value.strip())
    else:
        return None
    return out if 0 < out <= INT64_MAX else None


def parse_bool(value: Any) -> bool | None:
    """``true/false``, ``1/0`` (node-sdk sends 1/0) as bool; None when it is neither."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return {1: True, 0: False}.get(value)
    if isinstance(value, str):
        return {"true": True, "1": True, "false": False, "0": False}.get(value.strip().lower())
    return None


class Fields:
    """Typed reads from a JSON request body, collecting every problem before failing."""

    def __init__(self, body: Mapping[str, Any], prefix: str = "") -> None:
        self.body = body
        self.prefix = prefix
        self.errors: dict[str, str] = {}

    def has(self, key: str) -> bool:
        return key in self.body

    def fail(self, key: str, message: str) -> None:
        self.errors.setdefault(self.prefix + key, message)

    def _raw(self, key: str, label: str, required: bool) -> Any:
        value = self.body.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            if required:
                self.fail(key, f"{label} is required")
            return None
        return value

    def id(self, key: str, label: str, *, required: bool = False) -> int | None:
        value = self._raw(key, label, required)
        if value is None:
            return None
        out = parse_id(value)
        if out is None:
            self.fail(key, f"{label} must be a positive integer id")
        return out

    def text(
        self, key: str, label: str, *, required: bool = False, max_len: int | None = None
    ) -> str | None:
        value = self._raw(key, label, required)
        if value is None:
            return None
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            self.fail(key, f"{label} must be text")
            return None
        text = str(value)
        if max_len is not None and len(text) > max_len:
            self.fail(key, f"{label} must be at most {max_len} characters")
            return None
        return text

    def choice(
        self, key: str, label: str, choices: Sequence[str], *, required: bool = False
    ) -> str | None:
        value = self.text(key, label, required=required)
        if value is None:
            return None
        if value not in choices:
            self.fail(key, f"{label} must be one of: {', '.join(choices)}")
            return None
        return value

    def number(self, key: str, label: str, *, required: bool = False) -> Decimal | None:
        value = self._raw(key, label, required)
        if value is None:
            return None
        try:
            return records.to_decimal(value)
        except ValueError:
            self.fail(key, f"{label} must be a number")
            return None

    def boolean(self, key: str, label: str) -> bool | None:
        value = self.body.get(key)
        if value is None:
            return None
        out = parse_bool(value)
        if out is None:
            self.fail(key, f"{label} must be true or false")
        return out

    def unix(self, key: str, label: str, *, required: bool = False) -> int | None:
        value = self._raw(key, label, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | str):
            self.fail(key, f"{label} must be a unix timestamp in seconds")
            return None
        try:
            out = int(value)
        except ValueError:
            self.fail(key, f"{label} must be a unix timestamp in seconds")
            return None
        if out < 0:
            self.fail(key, f"{label} must be a unix timestamp in seconds")
            return None
        return out

    def id_list(self, key: str, label: str) -> list[int] | None:
        value = self.body.get(key)
        if value is None:
            return None
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list):
            self.fail(key, f"{label} must be a list of ids")
            return None
        out = [parse_id(v) for v in items]
        ids = [v for v in out if v is not None]
        if len(ids) != len(out):
            self.fail(key, f"{label} must be a list of ids")
            return None
        return ids

    def text_list(
        self, key: str, label: str, choices: Sequence[str] | None = None
    ) -> list[str] | None:
        value = self.body.get(key)
        if value is None:
            return None
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(key, f"{label} must be a list of text values")
            return None
        if choices is not None:
            bad = [v for v in value if v not in choices]
            if bad:
                self.fail(key, f"{label} must be among: {', '.join(choices)}")
                return None
        return list(value)

    def mapping(self, key: str, label: str) -> Mapping[str, Any] | None:
        value = self.body.get(key)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            self.fail(key, f"{label} must be an object")
            return None
        return value

    def external_ids(self) -> dict[str, str | None] | None:
        value = self.mapping("externalIds", "External ids")
        if value is None:
            return None
        out: dict[str, str | None] = {}
        for system, ext in value.items():
            if ext is not None and (isinstance(ext, bool) or not isinstance(ext, str | int)):
                self.fail("externalIds", f"External id {system!r} must be text")
                return None
            out[str(system)] = None if ext is None else str(ext)
        return out

    def check(self) -> None:
        if self.errors:
            raise ApiError(400, list(self.errors.values()), self.errors)


class Query:
    """Typed reads from a query string; every problem becomes one 400."""

    def __init__(self, params: Mapping[str, str]) -> None:
        self.params = params
        self.errors: dict[str, str] = {}

    def has(self, key: str) -> bool:
        value = self.params.get(key)
        return value is not None and value != ""

    def text(self, key: str) -> str | None:
        value = self.params.get(key)
        return value if value not in (None, "") else None

    def integer(self, key: str, *, minimum: int = 0) -> int | None:
        value = self.text(key)
        if value is None:
            return None
        try:
            out = int(value)
        except ValueError:
            self.errors[key] = f"{key} must be an integer"
            return None
        if out < minimum:
            self.errors[key] = f"{key} must be at least {minimum}"
            return None
        return out

    def id(self, key: str) -> int | None:
        value = self.text(key)
        if value is None:
            return None
        out = parse_id(value)
        if out is None:
            self.errors[key] = f"{key} must be an id"
        return out

    def ids(self, key: str) -> set[int] | None:
        value = self.text(key)
        if value is None:
            return None
        out = {parse_id(v) for v in value.split(",") if v.strip()}
        if None in out:
            self.errors[key] = f"{key} must be a comma-separated list of ids"
            return None
        return {v for v in out if v is not None}

    def boolean(self, key: str) -> bool | None:
        value = self.text(key)
        if value is None:
            return None
        out = parse_bool(value)
        if out is None:
            self.errors[key] = f"{key} must be true/false or 1/0"
        return out

    def choices(self, key: str, allowed: Iterable[str]) -> set[str] | None:
        value = self.text(key)
        if value is None:
            return None
        allowed_set = set(allowed)
        out = {v.strip() for v in value.split(",") if v.strip()}
        bad = sorted(out - allowed_set)
        if bad:
            self.errors[key] = f"{key}: unknown value(s) {', '.join(bad)}"
            return None
        return out

    def check(self) -> None:
        if self.errors:
            raise ApiError(400, list(self.errors.values()), self.errors)


Predicate = Callable[[Mapping[str, Any]], bool]


def ref_id(record: Mapping[str, Any], field: str) -> Any:
    """The ``id`` of an embedded ref (``record[field]["id"]``), or None."""
    ref = record.get(field)
    return ref.get("id") if isinstance(ref, Mapping) else None


def contains_ci(haystack: Any, needle: str) -> bool:
    return isinstance(haystack, str) and needle.lower() in haystack.lower()
