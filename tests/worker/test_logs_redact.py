"""The log redaction's shortcut (worker/logs.py): a text that holds none of the words the token
patterns need is returned without running them, and the result is always what running every
pattern gives."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.logs import _PATTERNS, REDACTED, redact

#: pieces the patterns look for (in several cases), and pieces around them
PIECES = st.sampled_from(
    [
        "Bearer ",
        "bearer\t",
        "BASIC ",
        "Basic ",
        "PHPSESSID=",
        "phpsessid=",
        "authorization_id>",
        "Authorization_ID",
        "/webhooks/servicetrade/",
        "/WEBHOOKS/servicetrade/",
        "client_secret=",
        '"password": "',
        "Access_Token:",
        "refresh_token=",
        "https://",
        "user:pw@",
        "redis://:pw@h",
        "abcdefgh1234",
        "xyz",
        " ",
        "/",
        "'",
        '"',
        "&",
        ",",
        "}",
        "@",
        ":",
        "=",
        "é",
    ]
)


def _every_pattern(text: str) -> str:
    for pat in _PATTERNS:
        text = pat.sub(lambda m: m.group(1) + REDACTED, text)
    return text


@settings(max_examples=600, deadline=None)
@given(st.lists(st.one_of(PIECES, st.text(max_size=6)), max_size=12).map("".join))
def test_the_shortcut_never_changes_what_is_redacted(text: str) -> None:
    assert redact(text, []) == _every_pattern(text)


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("Authorization: Bearer abcdefgh12345", "Authorization: Bearer [REDACTED]"),
        (
            "POST /webhooks/servicetrade/s3cr3t HTTP/1.1",
            "POST /webhooks/servicetrade/[REDACTED] HTTP/1.1",
        ),
        ("redis://:hunter22@127.0.0.1:6379/0", "redis://:[REDACTED]@127.0.0.1:6379/0"),
        ("webhook accepted", "webhook accepted"),
        ("bench-12345", "bench-12345"),
    ],
)
def test_redaction_by_pattern(text: str, redacted: str) -> None:
    assert redact(text, []) == redacted


def test_configured_secrets_are_redacted_without_any_pattern_word() -> None:
    assert redact("id m-1 carries s3cr3tvalue", ["s3cr3tvalue"]) == f"id m-1 carries {REDACTED}"
