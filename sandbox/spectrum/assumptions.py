"""Every simulator behaviour that no public source documents ([A] in the reference), in one place.

Each constant cites the section of ``shared/reference/spectrum-data-exchange.md`` it stands in for.
Assumptions the stsync client must share (wire shapes, codes, texts, headers) are defined once in
``clients/spectrum/assumptions.py`` and re-exported here; what only the simulator decides (fault
texts for client errors, sandbox defaults) is defined here.
"""

from __future__ import annotations

from datetime import date
from typing import Final

from clients.spectrum import assumptions as shared

# --- transport (§1, §4, §9.1, §9.4) ---------------------------------------------------------------

#: §4: "HTTP status of faults not documented (SOAP 1.1 convention: 500) [A]".
FAULT_HTTP_STATUS: Final = shared.FAULT_HTTP_STATUS
#: §9.1: an unknown service answers a client fault [A].
UNKNOWN_SERVICE_FAULT: Final = ("SOAP-ENV:Client", "Web service not found")
#: §1 [S]: the server fault integrators see under load; the fault injector answers with it too.
SERVER_FAULT: Final = shared.SERVER_FAULT
#: §1 / §9.3: a declared element missing from the request faults. The live server's fault text is
#: not public; we answer a client fault naming the elements, so a client bug is not retried as if
#: it were a server hiccup [A].
MISSING_ELEMENTS_FAULT: Final = ("SOAP-ENV:Client", "Missing element(s): {names}")
#: Malformed XML, a DTD, or a body whose operation element does not match the endpoint [A].
BAD_REQUEST_FAULT: Final = ("SOAP-ENV:Client", "Invalid request: {why}")
#: §9.4: fault-injector outcomes answered with the server fault before any work. ``rate_limit`` is a
#: ServiceTrade notion; Spectrum has no 429, so a scripted ``rate_limit`` is a server fault [A].
SERVER_FAULT_OUTCOMES: Final = frozenset({"error", "rate_limit"})
#: §1 lists element order in the WSDL; elements the layout does not declare are ignored, as a
#: ProIV form ignores unknown input [A]. False: they fault like missing ones.
IGNORE_UNDECLARED_ELEMENTS: Final = True
UNDECLARED_ELEMENTS_FAULT: Final = ("SOAP-ENV:Client", "Unknown element(s): {names}")

# --- Put outcomes (§4, §9.5) ----------------------------------------------------------------------

#: §4: success of a Put is "not documented publicly" — the simulator answers these rows, none,
#: i.e. an empty ``<returnData/>`` (plus a ``G`` row when it assigned a number) [A].
PUT_SUCCESS_ROWS: Final[tuple[tuple[str, str, str], ...]] = ()
#: §4/§9.5: an auto-assigned key comes back as one ``G`` row: desc = the value, column = the key.
GOOD_CODE: Final = shared.GOOD_CODE
#: §9.5: first work-order number handed out when a company has no numeric WO yet; later ones are
#: 1 + the highest all-digit WO_Number of the company [A].
WO_FIRST_NUMBER: Final = 1
#: §4: the wording of the duplicate message is a guess; the shared layout module owns it.
DUPLICATE_MESSAGE: Final = shared.DUPLICATE_TEXT

# --- GUID (§2, §9.6) ------------------------------------------------------------------------------

GUID_MAX_LEN: Final = shared.GUID_MAX_LEN
#: §2 [C]: a GUID "expires after ~24 h of inactivity"; §9.6 leaves the code open ("A?") — we use A.
GUID_IDLE_EXPIRY: Final = shared.GUID_IDLE_EXPIRY
GUID_TIMEOUT_ROW: Final = shared.GUID_TIMEOUT_ROW
#: §2 [C]: a GUID "may be shared across services but not across Authorization IDs for the same
#: service"; the code and wording of the refusal are ours [A].
GUID_OTHER_AUTH_ROW: Final = (
    "I",
    "GUID is in use by another Authorization ID for this service",
    "GUID",
)
#: GUIDs remembered at most (oldest forgotten first) so a long soak cannot grow memory unbounded.
GUID_MEMORY: Final = 200_000

# --- Get services (§4, §5, §6, §9.8) --------------------------------------------------------------

#: §4 [C types]: the vendor's Get example answers an authorization failure with ``E`` and this text
#: (Put services use ``A`` and the longer text). Row fields stay empty, Error_* filled [S gh-zeep].
GET_NOT_AUTHORIZED_CODE: Final = shared.GET_NOT_AUTHORIZED_CODE
GET_NOT_AUTHORIZED_TEXT: Final = shared.GET_NOT_AUTHORIZED_TEXT
#: §4 [W]: the trailing warning row of a capped Get result.
ROW_CAP_CODE: Final = shared.ROW_CAP_CODE
ROW_CAP_TEXT: Final = shared.ROW_CAP_TEXT
#: §6: GetPhase's blank pStatus_Code is undocumented; we read it like GetJob's (Active+Inactive).
PHASE_BLANK_STATUS: Final = frozenset({"A", "I"})
#: §6: GetEmployee's blank pStatus_Type is undocumented; blank returns every status [A].
EMPLOYEE_BLANK_STATUS: Final = None
#: §6: the sandbox posts no cost, so GetPhase's job-to-date figures are zero [A].
JTD_ZERO: Final = "0.00"
#: §5 SuperSelect: ``A/F`` is inclusive at both ends, and a value that starts with the upper bound
#: (``F100`` for ``A/F``) is inside the range, the way a code-range prompt reads [A].
RANGE_UPPER_IS_PREFIX: Final = True
#: §5: SuperSelect matching is case-sensitive (Spectrum codes are stored uppercase) [A].
SUPERSELECT_CASE_SENSITIVE: Final = True

# --- REST multi-line invoice (§6, §7.4, §9.7) -----------------------------------------------------

#: §9.7: the response body is a pure assumption: one entry per submitted invoice, in request order.
#: When an invoice has several errors, Error_Code is the first error's code and descriptions and
#: columns are joined (``"; "`` and ``","``) so nothing is lost [A].
REST_DESCRIPTION_JOIN: Final = shared.REST_DESCRIPTION_JOIN
REST_COLUMN_JOIN: Final = shared.REST_COLUMN_JOIN
rest_invoice_result = shared.rest_invoice_result


#: §7.4 [W agave]: what a sync vendor saw (HTTP 500) when AR processing dates were never set up;
#: the sandbox answers the same for every REST server error [A].
REST_SERVER_ERROR_BODY: Final = {
    "message": "There was an error processing your request. It has been logged"
}
#: §2: under Enhanced Authentication the Authorization header carries the Bearer token, yet the
#: Authorization ID "is still required". How a REST call carries it then is not public: the sandbox
#: reads these two headers (or HTTP Basic when Enhanced Auth is off) [A].
REST_COMPANY_HEADER: Final = shared.REST_COMPANY_HEADER
REST_AUTHORIZATION_ID_HEADER: Final = shared.REST_AUTHORIZATION_ID_HEADER

# --- Enhanced Authentication (§2, §9.2) -----------------------------------------------------------

#: §2 [C]: tokens are Bearer; their lifetime is not documented [A].
TOKEN_LIFETIME: Final = shared.TOKEN_LIFETIME
#: §2: without a valid Bearer (when Enhanced Auth is on) the call is refused with HTTP 401 before
#: any SOAP processing [A].
BEARER_MISSING_STATUS: Final = 401

# --- processing windows (§7.4) --------------------------------------------------------------------

#: Default AR and PR processing-date windows of a fresh sandbox (brief for F18).
DEFAULT_WINDOW: Final = (date(2020, 1, 1), date(2030, 12, 31))
