"""Credentials the sandbox accepts by default, and the demo/test environment that uses them.

Not secrets: the sandbox only listens on loopback. Production credentials come from the
environment (docs/configuration.md).
"""

from __future__ import annotations

ST_CLIENT_ID = "stsync-demo"
ST_CLIENT_SECRET = "demo-client-secret-0000"
ST_USERNAME = "api@acme-fire.example"
ST_PASSWORD = "demo-password-0000"

SPECTRUM_COMPANY = "ABC"
SPECTRUM_AUTHORIZATION_ID = "apxK7Q2M9TZ"
#: a second company on the same Spectrum instance, for multi-connection tests (F11)
SPECTRUM_COMPANY_2 = "XYZ"
SPECTRUM_AUTHORIZATION_ID_2 = "apxSECOND01"
#: an Authorization ID that exists but is inactive (A rows)
SPECTRUM_INACTIVE_AUTHORIZATION_ID = "apxINACTIVE"

WEBHOOK_SECRET = "demo-webhook-secret-0123456789abcdef"


def demo_environment(st_url: str, spectrum_url: str, infolink_url: str) -> dict[str, str]:
    """Environment variables that point stsync at a running sandbox."""
    return {
        "SERVICETRADE_BASE_URL": st_url,
        "SERVICETRADE_CLIENT_ID": ST_CLIENT_ID,
        "SERVICETRADE_CLIENT_SECRET": ST_CLIENT_SECRET,
        "SPECTRUM_BASE_URL": spectrum_url,
        "SPECTRUM_AUTHORIZATION_ID": SPECTRUM_AUTHORIZATION_ID,
        "SPECTRUM_COMPANY_CODE": SPECTRUM_COMPANY,
        "SPECTRUM_INFOLINK_URL": infolink_url,
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
    }
