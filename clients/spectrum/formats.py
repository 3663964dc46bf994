"""Spectrum wire formats (reference §5): dates ``MM/DD/CCYY``, plain decimals, digits-only phones.

Pure functions, used by mappers to format, by the client to check, and by the sandbox to parse.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from clients.spectrum.services import FORBIDDEN_KEY_CHARS, Field, Kind

_DATE_RE = re.compile(r"^(\d{2})([/-])(\d{2})\2(\d{4})$")
_NUMBER_RE = re.compile(r"^-?\d+(\.\d+)?$")
CENT = Decimal("0.01")


def format_date(d: date) -> str:
    """``MM/DD/CCYY``."""
    return d.strftime("%m/%d/%Y")


def parse_date(text: str) -> date:
    """Parse ``MM/DD/CCYY`` (or with dashes); ValueError otherwise."""
    m = _DATE_RE.match(text.strip())
    if not m:
        raise ValueError(f"{text!r} is not a MM/DD/CCYY date")
    month, _, day, year = m.groups()
    return date(int(year), int(month), int(day))


def format_money(amount: Decimal) -> str:
    """Two decimals, leading minus only, no separators (``-1234.50``)."""
    return str(amount.quantize(CENT, rounding=ROUND_HALF_UP))


def format_decimal(value: Decimal, places: int = 4) -> str:
    """A plain decimal without exponent or trailing zeros beyond what is needed."""
    try:
        q = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP).normalize()
    except InvalidOperation as exc:  # too many digits for the decimal context
        raise ValueError(f"{value} has too many digits to send to Spectrum") from exc
    return format(q, "f")


def parse_number(text: str) -> Decimal:
    """Parse a Spectrum number (``-10.2``); ValueError on ``$``, ``,``, trailing minus."""
    t = text.strip()
    if not _NUMBER_RE.match(t):
        raise ValueError(f"{text!r} is not a plain number (digits, optional leading minus)")
    try:
        return Decimal(t)
    except InvalidOperation as exc:  # pragma: no cover - regex already guards
        raise ValueError(f"{text!r} is not a number") from exc


def digits_only(phone: str | None) -> str:
    """Phones are stored without punctuation (reference §5)."""
    return "".join(ch for ch in (phone or "") if ch.isdigit())


def as_of_date(ts: int | float, tz: str) -> date:
    """The calendar date of a unix timestamp in the account's time zone."""
    from zoneinfo import ZoneInfo

    return datetime.fromtimestamp(ts, ZoneInfo(tz)).date()


def check_value(field: Field, value: str) -> str | None:
    """Why ``value`` is not acceptable for ``field`` (None when it is). Empty is always fine here;
    required-ness is checked separately."""
    if value == "":
        return None
    if len(value) > field.max_len:
        return f"is {len(value)} characters; Spectrum allows {field.max_len}"
    if field.kind in (Kind.KEY, Kind.UPPER_KEY):
        bad = sorted(set(value) & FORBIDDEN_KEY_CHARS)
        if bad:
            return f"contains characters Spectrum forbids in codes: {''.join(bad)}"
        if field.kind is Kind.UPPER_KEY and value != value.upper():
            return "must be uppercase"
    elif field.kind is Kind.DATE:
        try:
            parse_date(value)
        except ValueError as exc:
            return str(exc)
    elif field.kind is Kind.NUMBER:
        try:
            parse_number(value)
        except ValueError as exc:
            return str(exc)
    elif field.kind is Kind.FLAG:
        if value not in ("Y", "N"):
            return "must be Y or N"
    elif field.kind is Kind.PHONE and not value.isdigit():
        return "must be digits only"
    if field.choices and value not in field.choices:
        return f"must be one of {', '.join(field.choices)}"
    return None
