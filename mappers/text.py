"""Text rules Spectrum imposes on free-text fields (reference §5), as pure helpers.

Spectrum truncates over-long text silently; stsync shortens deliberately instead and reports each
change as an *adjustment* (kept in the ledger and shown by ``stsync history``). Codes are never
shortened: a code that does not fit is an error (see ``mappers.rules.CodeRange``).
"""

from __future__ import annotations

import re
import unicodedata

_SPACES = re.compile(r"\s+")


def ascii_printable(text: str) -> str:
    """Printable ASCII only: accents folded (é -> e), control characters and emoji dropped."""
    folded = unicodedata.normalize("NFKD", text)
    kept = "".join(ch for ch in folded if 32 <= ord(ch) <= 126 or ch in "\t\n\r")
    return _SPACES.sub(" ", kept).strip()


def fit(
    value: str | None, max_len: int, *, label: str, adjustments: list[str], no_commas: bool = False
) -> str:
    """``value`` cleaned and cut to ``max_len``; every change is appended to ``adjustments``."""
    if not value:
        return ""
    cleaned = ascii_printable(value)
    if no_commas and "," in cleaned:
        cleaned = _SPACES.sub(" ", cleaned.replace(",", " ")).strip()
    if len(cleaned) > max_len:
        cut = cleaned[:max_len].rstrip()
        adjustments.append(f"{label} shortened to {max_len} characters: {cleaned!r} -> {cut!r}")
        cleaned = cut
    elif cleaned != value.strip():
        adjustments.append(f"{label} cleaned for Spectrum: {value.strip()!r} -> {cleaned!r}")
    return cleaned


def state_code(value: str | None, *, label: str, adjustments: list[str]) -> str:
    """A two-letter state code, uppercase; anything else is dropped with an adjustment."""
    if not value:
        return ""
    v = value.strip().upper()
    if len(v) == 2 and v.isalpha():
        return v
    adjustments.append(f"{label} {value!r} is not a two-letter state code; left empty")
    return ""


def phone_digits(
    value: str | None, *, label: str, adjustments: list[str], max_len: int = 14
) -> str:
    """ASCII digits only (Spectrum stores phones without punctuation), at most ``max_len``.

    Decimal digits of other scripts (fullwidth ``１``, Arabic-Indic ``٣``) count as their value;
    other characters that ``str.isdigit`` accepts (superscripts ``²``, circled ``①``) are dropped.
    """
    digits = "".join(
        str(d) for ch in (value or "") if (d := unicodedata.decimal(ch, None)) is not None
    )
    if len(digits) > max_len:
        adjustments.append(f"{label} has {len(digits)} digits; kept the first {max_len}")
        digits = digits[:max_len]
    return digits
