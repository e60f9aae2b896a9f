"""Headers sanitised by the OpenTelemetry SDK (``[REDACTED]``) prove a credential, nothing more."""

from __future__ import annotations

from agent.model import Resource, SpanKind, auth_evidence, make_span
from enrichers.zerotrust.tokens import SANITIZED, TokenChecker

RES = Resource.from_attributes({"service.name": "orders"})


def server_span(headers: dict[str, str]) -> object:
    attrs = {"http.request.method": "GET", "url.path": "/orders/1", "http.route": "/orders/{id}"}
    attrs.update({f"http.request.header.{k}": [v] for k, v in headers.items()})
    return make_span(trace_id="a" * 32, span_id="b" * 16, parent_span_id="", resource=RES, name="GET",
                     kind=SpanKind.SERVER, start_ns=10, end_ns=20, attributes=attrs)


def test_sanitised_values_are_not_credentials_to_compare() -> None:
    span = server_span({"authorization": SANITIZED, "x-api-key": SANITIZED, "user-agent": "curl/8"})
    assert TokenChecker(b"k" * 32, ()).credentials(span) == []  # type: ignore[arg-type]
    # ... yet the request still shows that it carried credentials.
    assert "apikey" in (auth_evidence(span) or ())  # type: ignore[arg-type]


def test_real_values_still_are() -> None:
    span = server_span({"x-api-key": "svc-internal-7c1f"})
    creds = TokenChecker(b"k" * 32, ()).credentials(span)  # type: ignore[arg-type]
    assert [c.kind for c in creds] == ["apikey"]
