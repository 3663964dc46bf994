"""SuperSelect, the filter syntax of Spectrum's Get parameters (reference §5), as far as the
simulator needs it: ``L*`` and ``?`` wildcards, ``A,B,C`` lists, ``A/F`` ranges, ``#X`` everything
but, and ``ALL`` / ``*`` / blank for no filter.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

from sandbox.spectrum import assumptions as assume

Matcher = Callable[[str], bool]


def _always(_value: str) -> bool:
    return True


def _term(term: str) -> Matcher:
    """One list element: a range, a wildcard pattern or an exact value."""
    if "/" in term:
        lo, _, hi = term.partition("/")

        def in_range(value: str) -> bool:
            if lo and value < lo:
                return False
            if not hi:
                return True
            return value <= hi or (assume.RANGE_UPPER_IS_PREFIX and value.startswith(hi))

        return in_range
    if "*" in term or "?" in term:
        pattern = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in term)
        flags = 0 if assume.SUPERSELECT_CASE_SENSITIVE else re.IGNORECASE
        rx = re.compile(f"^{pattern}$", flags | re.DOTALL)
        return lambda value: rx.match(value) is not None
    if assume.SUPERSELECT_CASE_SENSITIVE:
        return lambda value: value == term
    folded = term.casefold()
    return lambda value: value.casefold() == folded


@lru_cache(maxsize=1024)
def compile_filter(expression: str) -> Matcher:
    """A predicate for one SuperSelect expression (values are compared trimmed)."""
    expr = expression.strip()
    if expr in ("", "*") or expr.upper() == "ALL":
        return _always
    negate = expr.startswith("#")
    if negate:
        expr = expr[1:].strip()
    terms = [_term(t.strip()) for t in expr.split(",") if t.strip()]

    def match(value: str) -> bool:
        v = value.strip()
        hit = any(t(v) for t in terms)
        return not hit if negate else hit

    return match
