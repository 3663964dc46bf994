"""The one digest of what a request asks (pure: models, the ledger and the audit all use it)."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def request_digest(payload: Any) -> str:
    """sha256 of the canonical JSON of ``payload``."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()
