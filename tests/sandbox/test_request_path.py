"""``request_path``: the recorded path reads the ASGI scope directly and must equal what
``request.url`` gave (path escaping and the query string included)."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from sandbox.faults import request_path


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/api/invoice/12", b""),
        ("/api/job", b"status=scheduled&page=2"),
        ("/ws/Get Job", b"wsdl"),
        ("/odd?#\\path/caf\u00e9", b"q=%20x&r=\xc3\xa9"),
    ],
)
def test_request_path_equals_request_url(path: str, query: bytes) -> None:
    scope = {
        "type": "http",
        "method": "GET",
        "scheme": "http",
        "server": ("127.0.0.1", 8801),
        "path": path,
        "query_string": query,
        "headers": [(b"host", b"127.0.0.1:8801")],
    }
    url = Request(scope).url
    assert request_path(scope) == url.path
    expected = url.path + (f"?{url.query}" if url.query else "")
    assert request_path(scope, with_query=True) == expected
