"""What both stsync and the Spectrum sandbox assume about Spectrum where public sources are silent.

One module, read by the client (``clients/spectrum``) and the simulator (``sandbox/spectrum``), so
the two make the *same* assumption and a real server that differs is fixed in one place. Each item
cites ``shared/reference/spectrum-data-exchange.md``; [A] = assumption, [C]/[S]/[W] = its source
confidence. Service layouts live in ``services.py``, Info-Link tables in ``infolink_schema.py``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Final

from clients.spectrum.services import DUPLICATE_MESSAGE

# --- faults (§1, §4) ------------------------------------------------------------------------------

#: §1 [S]: the server fault integrators see under load; retried by callers (never for writes).
SERVER_FAULT: Final = ("SOAP-ENV:Server", "Error executing Web Service")
#: §4 [A]: a fault comes with HTTP 500 (SOAP 1.1 convention).
FAULT_HTTP_STATUS: Final = 500

# --- Put outcomes (§4, §9.5) ----------------------------------------------------------------------

#: §4 [A]: success of a Put is not documented: no ``response`` rows (an empty ``<returnData/>``),
#: or only rows whose ``error_code`` is blank, ``S`` or ``G``.
PUT_OK_CODES: Final = frozenset({"", "S", "G"})
#: §4/§9.5 [A]: an auto-assigned key comes back as one ``G`` row: desc = value, column = key name.
GOOD_CODE: Final = "G"
#: §4 [A]: the wording of "already exists" is a guess; a duplicate is recognised by an ``I`` row on
#: the service's unique column (``services.UNIQUE_KEYS``), not by this text.
DUPLICATE_TEXT: Final = DUPLICATE_MESSAGE

# --- GUID (§2, §9.6) ------------------------------------------------------------------------------

GUID_MAX_LEN: Final = 36
#: §2 [C]: a GUID expires after ~24 h idle; the client renews its batch GUID a little earlier.
GUID_IDLE_EXPIRY: Final = timedelta(hours=24)
GUID_RENEW_AFTER: Final = timedelta(hours=23)
#: §2 [C] text; §9.6 [A] code ``A`` and column ``GUID``.
GUID_TIMEOUT_ROW: Final = ("A", "Time out has occurred", "GUID")

# --- Get services (§4) ----------------------------------------------------------------------------

#: §4 [C types]: a Get authorization failure is a row with only Error_* filled: ``E`` and this text.
GET_NOT_AUTHORIZED_CODE: Final = "E"
GET_NOT_AUTHORIZED_TEXT: Final = "The web service is not Authorized"
#: §4 [W]: a capped Get result ends with a ``W`` row whose description mentions "exceeds maximum".
ROW_CAP_CODE: Final = "W"
ROW_CAP_TEXT: Final = "Result exceeds maximum of {cap} rows; narrow the selection"

# --- REST multi-line invoice (§6, §9.7) -----------------------------------------------------------

REST_INVOICE_PATH: Final = "/customer/invoice"
#: §8 [W]: the authorization name under which the REST invoice service is granted.
REST_INVOICE_SERVICE: Final = "ARMultiLineInvoice"
#: §9.7 [A]: the response body: ``{"arInvoices": [{Invoice_Or_Transaction, Error_Code,
#: Error_Description, Error_Column}]}``, one entry per submitted invoice; several errors of one
#: invoice are joined (first error's code; descriptions with "; ", columns with ",").
REST_RESULTS_KEY: Final = "arInvoices"
REST_NUMBER_KEY: Final = "Invoice_Or_Transaction"
REST_DESCRIPTION_JOIN: Final = "; "
REST_COLUMN_JOIN: Final = ","
#: §2 [A]: under Enhanced Authentication the Authorization header carries the Bearer token; the
#: Authorization ID and company then travel in these headers (HTTP Basic otherwise).
REST_COMPANY_HEADER: Final = "X-Company-Code"
REST_AUTHORIZATION_ID_HEADER: Final = "X-Authorization-ID"


def rest_invoice_result(number: str, errors: list[tuple[str, str, str]]) -> dict[str, str]:
    """§9.7 [A]: one ``arInvoices`` entry (``errors`` as ``(code, description, column)``)."""
    return {
        REST_NUMBER_KEY: number,
        "Error_Code": errors[0][0] if errors else "",
        "Error_Description": REST_DESCRIPTION_JOIN.join(e[1] for e in errors),
        "Error_Column": REST_COLUMN_JOIN.join(dict.fromkeys(e[2] for e in errors if e[2])),
    }


# --- Enhanced Authentication (§2) -----------------------------------------------------------------

#: §2 [C]: ``POST {base}/connect/token``, client credentials, scope ``spectrumapi``.
TOKEN_PATH: Final = "/connect/token"  # noqa: S105 - a path, not a password
TOKEN_SCOPE: Final = "spectrumapi"  # noqa: S105 - an OAuth scope name
#: §2 [A]: token lifetime when the answer carries no ``expires_in``.
TOKEN_LIFETIME: Final = timedelta(hours=1)


# --- probing authorization without writing (``stsync doctor``, issue 14) --------------------------

#: §10 rule 1 [C]: every service must be authorized on the Authorization ID, otherwise ``A``.
#: [A] Spectrum checks that grant before the record's elements: a Put (or a REST invoice) whose
#: required elements are all empty answers ``A`` when the service is not authorized and ``E``/``M``
#: rows, writing nothing, when it is. ``stsync doctor`` probes Put services this way.
PROBE_AUTHORIZATION_BEFORE_VALIDATION: Final = True
#: [A] The harmless read of a Get service: narrowed to a job number no company uses (zero rows).
PROBE_GET_PARAMS: Final[dict[str, dict[str, str]]] = {"GetPhase": {"pJob_Number": "ZZDOCTOR"}}
