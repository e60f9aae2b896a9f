"""The catalogue of abuse rules: id, title, OWASP API Top 10 (2023) category,
default severity and what to do about it. Detection code lives in one file per
family (``floods.py``, ``bola.py``, ...) and refers to these constants.
"""

from __future__ import annotations

from agent.model import Severity
from enrichers.abuse.findings import Rule

H, M, L, C = Severity.HIGH, Severity.MEDIUM, Severity.LOW, Severity.CRITICAL

# Floods and bots
ENDPOINT_FLOOD = Rule(
    "abuse.endpoint_flood", "Request flood on an endpoint", "API4:2023", H,
    "Put a global rate limit in front of the endpoint (see `apiward ratelimits`) and absorb floods at the edge.",
)
CLIENT_SPIKE = Rule(
    "abuse.client_rate_spike", "Client far above the endpoint's usual per-client rate", "API4:2023", M,
    "Limit requests per client (API key, user or address) on this endpoint.",
)
NO_RATE_LIMIT = Rule(
    "abuse.rate_limit_missing", "Heavy client never rate-limited (no 429 ever returned)", "API4:2023", M,
    "Add per-client rate limiting that answers 429; `apiward ratelimits` proposes limits.",
)
HEADLESS = Rule(
    "abuse.headless_client", "Headless browser or attack tool as client", "API6:2023", M,
    "Challenge or block automation on user-facing flows (bot management, device attestation).",
)
AUTOMATED_CLIENT = Rule(
    "abuse.automated_client", "Non-browser tool client on a user-facing endpoint", "API6:2023", L,
    "Check whether this automation is sanctioned; give integrations API keys and rate-limit the rest.",
)
METRONOME = Rule(
    "abuse.metronome_client", "Client with machine-regular request cadence", "API6:2023", M,
    "Check whether this client is an unsanctioned automation; rate-limit or challenge it.",
)
SCRAPING = Rule(
    "abuse.scraping", "Client reads many distinct resources in a short time", "API6:2023", M,
    "Rate-limit reads per client and cap result sets; consider bot protection for bulk reads.",
)
# API1
BOLA_ENUM = Rule(
    "abuse.bola_enumeration", "One client enumerates object ids on a parameterised route", "API1:2023", H,
    "Check object ownership on every request for this route, not only authentication.",
)
BOLA_FOREIGN = Rule(
    "abuse.bola_foreign_object", "Principal reads objects named after another principal", "API1:2023", H,
    "Compare the path identifier with the authenticated subject server-side.",
)
# API2
STUFFING = Rule(
    "abuse.credential_stuffing", "Credential stuffing against a login route", "API2:2023", H,
    "Throttle failed logins per account and per client, add MFA and breached-password checks.",
)
CREDS_IN_URL = Rule(
    "abuse.credentials_in_url", "Credentials sent in the URL query string", "API2:2023", M,
    "Send credentials in headers or bodies; URLs end up in logs, proxies and browser history.",
)
MISSING_CREDS = Rule(
    "abuse.missing_credentials", "Successful call without credentials on a route that usually has them", "API2:2023", H,
    "Enforce authentication on every method and path variant of this route.",
)
# API3
MASS_ASSIGNMENT = Rule(
    "abuse.mass_assignment", "Privileged property in a request body", "API3:2023", M,
    "Bind request bodies to an allow-list of writable properties.",
)
# API4
LARGE_RESPONSE = Rule(
    "abuse.large_response", "Very large response", "API4:2023", M,
    "Paginate and cap response sizes; check whether the client should read this much.",
)
PAGE_SIZE = Rule(
    "abuse.unbounded_page_size", "Unbounded page size requested", "API4:2023", M,
    "Cap page-size parameters server-side.",
)
LATENCY = Rule(
    "abuse.latency_anomaly", "Endpoint latency far above its baseline", "API4:2023", M,
    "Look for expensive inputs (ReDoS, huge queries) and set timeouts and input limits.",
)
ERROR_RATE = Rule(
    "abuse.error_rate_anomaly", "Endpoint error rate far above its baseline", "API4:2023", M,
    "Check for resource exhaustion or malformed-input probing behind the errors.",
)
# API5
ADMIN_CALLER = Rule(
    "abuse.admin_unusual_caller", "Admin or internal route called by an unusual caller", "API5:2023", H,
    "Enforce role checks on admin and internal routes; keep internal routes off public ingress.",
)
ESCALATION = Rule(
    "abuse.method_escalation", "Write method on a route the caller only ever read", "API5:2023", H,
    "Authorise each method separately; only the roles that write may PUT/DELETE here.",
)
# API6
FLOW_BURST = Rule(
    "abuse.business_flow_burst", "Automated burst on a sensitive business flow", "API6:2023", H,
    "Protect this flow against automation (per-account limits, CAPTCHA, device fingerprinting).",
)
# API7
SSRF = Rule(
    "abuse.ssrf", "URL from a request parameter fetched by the service (SSRF)", "API7:2023", H,
    "Validate outbound destinations against an allow-list; block link-local and internal ranges.",
)
# API8
ERROR_DISCLOSURE = Rule(
    "abuse.error_disclosure", "Stack trace or SQL disclosed on an error", "API8:2023", M,
    "Return generic error bodies; keep stack traces and SQL in server logs only.",
)
DEBUG_ENDPOINT = Rule(
    "abuse.debug_endpoint_exposed", "Debug or management endpoint exposed", "API8:2023", H,
    "Remove or protect debug and management endpoints (/actuator, /debug/pprof, ...).",
)
CORS = Rule(
    "abuse.cors_wildcard_credentials", "CORS allows any origin with credentials", "API8:2023", H,
    "Never combine a wildcard or reflected origin with Access-Control-Allow-Credentials: true.",
)
SECURITY_HEADERS = Rule(
    "abuse.missing_security_headers", "Security response headers missing", "API8:2023", L,
    "Send X-Content-Type-Options: nosniff and, over HTTPS, Strict-Transport-Security.",
)
PLAINTEXT_EDGE = Rule(
    "abuse.plaintext_public_edge", "Public clients reach the API over plain HTTP", "API8:2023", M,
    "Serve public traffic over HTTPS only and redirect plain HTTP.",
)
# API9
OLD_VERSION = Rule(
    "abuse.old_api_version", "Old API version still called while a newer one exists", "API9:2023", L,
    "Retire the old version or route it to the new one; track who still calls it.",
)
# API10
PLAINTEXT_THIRD_PARTY = Rule(
    "abuse.plaintext_third_party", "Third-party API called over plain HTTP", "API10:2023", M,
    "Call third-party APIs over HTTPS and validate their certificates.",
)
INJECTION_DB = Rule(
    "abuse.injection_reaches_db", "Injection payload from the query string reached the database", "API10:2023", C,
    "Use parameterised queries; never build SQL from request or third-party data.",
)

ALL = (
    ENDPOINT_FLOOD, CLIENT_SPIKE, NO_RATE_LIMIT, HEADLESS, AUTOMATED_CLIENT, METRONOME, SCRAPING, BOLA_ENUM, BOLA_FOREIGN,
    STUFFING, CREDS_IN_URL, MISSING_CREDS, MASS_ASSIGNMENT, LARGE_RESPONSE, PAGE_SIZE, LATENCY,
    ERROR_RATE, ADMIN_CALLER, ESCALATION, FLOW_BURST, SSRF, ERROR_DISCLOSURE, DEBUG_ENDPOINT, CORS,
    SECURITY_HEADERS, PLAINTEXT_EDGE, OLD_VERSION, PLAINTEXT_THIRD_PARTY, INJECTION_DB,
)
