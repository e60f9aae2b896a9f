"""The normalised views, table-driven over real attribute sets of both conventions."""

from __future__ import annotations

import pytest

from agent.model import (
    Resource,
    Severity,
    SpanKind,
    StatusCode,
    Subject,
    auth_evidence,
    finding_id,
    make_span,
    tls_evidence,
)

RES = Resource.from_attributes({"service.name": "users", "service.namespace": "shop",
                                "deployment.environment.name": "prod", "k8s.pod.name": "users-1"})


def span(attrs, kind=SpanKind.SERVER, **kw):
    return make_span(trace_id="a" * 32, span_id="b" * 16, parent_span_id="", resource=RES,
                     name="x", kind=kind, start_ns=1, end_ns=2_000_001, attributes=attrs, **kw)


# (case, kind, attributes, expected HttpView fields)
HTTP_CASES = [
    (
        "stable server (Flask instrumentation >= 0.49)", SpanKind.SERVER,
        {"http.request.method": "GET", "url.scheme": "http", "url.path": "/users/42",
         "url.query": "verbose=1", "http.route": "/users/<int:user_id>", "http.response.status_code": 200,
         "server.address": "users.shop.svc", "server.port": 8080, "client.address": "10.1.2.3",
         "network.peer.address": "10.1.2.4", "network.peer.port": 51234,
         "user_agent.original": "curl/8.5.0", "network.protocol.version": "1.1",
         "http.request.header.authorization": ["Bearer abc"]},
        dict(method="GET", scheme="http", path="/users/42", query="verbose=1", route="/users/<int:user_id>",
             status_code=200, server_address="users.shop.svc", server_port=8080, client_address="10.1.2.3",
             network_peer_address="10.1.2.4", network_peer_port=51234, user_agent="curl/8.5.0",
             protocol_version="1.1", request_headers={"authorization": "Bearer abc"}),
    ),
    (
        "legacy server (http.target, net.host.name, http.client_ip)", SpanKind.SERVER,
        {"http.method": "post", "http.scheme": "https", "http.target": "/login?next=/home",
         "http.status_code": 401, "net.host.name": "auth", "net.host.port": 443,
         "http.client_ip": "203.0.113.9", "net.peer.ip": "10.0.0.7", "http.user_agent": "python-requests/2.31",
         "http.flavor": "1.1", "http.request_content_length": 57},
        dict(method="POST", scheme="https", path="/login", query="next=/home", status_code=401,
             server_address="auth", server_port=443, client_address="203.0.113.9",
             network_peer_address="10.0.0.7", user_agent="python-requests/2.31", protocol_version="1.1",
             request_body_size=57),
    ),
    (
        "legacy client (http.url, net.peer.name)", SpanKind.CLIENT,
        {"http.method": "GET", "http.url": "https://api.stripe.example:8443/v1/charges?limit=5",
         "http.status_code": "200", "net.peer.name": "api.stripe.example", "net.peer.port": 8443},
        dict(method="GET", scheme="https", path="/v1/charges", query="limit=5", status_code=200,
             server_address="api.stripe.example", server_port=8443,
             url="https://api.stripe.example:8443/v1/charges?limit=5"),
    ),
    (
        "stable client (url.full only)", SpanKind.CLIENT,
        {"http.request.method": "DELETE", "url.full": "http://orders:8000/orders/7",
         "http.response.status_code": 503, "peer.service": "orders"},
        dict(method="DELETE", scheme="http", path="/orders/7", query="", status_code=503,
             server_address="orders", server_port=8000, peer_service="orders"),
    ),
    (
        "http.host with port", SpanKind.SERVER,
        {"http.method": "GET", "http.target": "/", "http.host": "shop.example:8080"},
        dict(server_address="shop.example", server_port=8080, path="/"),
    ),
    (
        "response headers and body sizes", SpanKind.SERVER,
        {"http.request.method": "GET", "url.path": "/a", "http.response.body.size": 1234,
         "http.response.header.content_type": ["application/json"],
         "http.response.header.access-control-allow-origin": ["*"]},
        dict(response_body_size=1234,
             response_headers={"content-type": "application/json", "access-control-allow-origin": "*"}),
    ),
]


@pytest.mark.parametrize("case,kind,attrs,expected", HTTP_CASES, ids=[c[0] for c in HTTP_CASES])
def test_http_view(case, kind, attrs, expected):
    s = span(attrs, kind)
    assert s.http is not None
    for field, value in expected.items():
        assert getattr(s.http, field) == value, field


def test_non_http_span_has_no_http_view():
    s = span({"rpc.system": "grpc", "rpc.service": "shop.Cart", "rpc.method": "Add", "rpc.grpc.status_code": 0})
    assert s.http is None
    assert s.rpc is not None and (s.rpc.system, s.rpc.service, s.rpc.method, s.rpc.grpc_status) == (
        "grpc", "shop.Cart", "Add", 0)
    assert not s.is_error


DB_CASES = [
    ({"db.system": "postgresql", "db.name": "shop", "db.statement": "SELECT 1", "db.operation": "SELECT",
      "net.peer.name": "pg"}, ("postgresql", "shop", "SELECT 1", "SELECT", "pg")),
    ({"db.system.name": "sqlite", "db.namespace": "inv", "db.query.text": "SELECT * FROM t",
      "db.operation.name": "SELECT", "server.address": "localhost"}, ("sqlite", "inv", "SELECT * FROM t", "SELECT",
                                                                     "localhost")),
]


@pytest.mark.parametrize("attrs,expected", DB_CASES)
def test_db_view(attrs, expected):
    d = span(attrs, SpanKind.CLIENT).db
    assert d is not None
    assert (d.system, d.name, d.statement, d.operation, d.server_address) == expected


@pytest.mark.parametrize(
    "attrs,expected",
    [
        ({"messaging.system": "kafka", "messaging.destination.name": "orders", "messaging.operation.type": "send"},
         ("kafka", "orders", "send")),
        ({"messaging.system": "rabbitmq", "messaging.destination": "q1", "messaging.operation": "receive"},
         ("rabbitmq", "q1", "receive")),
    ],
)
def test_messaging_view(attrs, expected):
    m = span(attrs, SpanKind.PRODUCER).messaging
    assert m is not None and (m.system, m.destination, m.operation) == expected


def test_faas_view_from_span_and_resource():
    res = Resource.from_attributes({"service.name": "orders-fn", "faas.name": "orders", "cloud.provider": "aws"})
    s = make_span(trace_id="a" * 32, span_id="b" * 16, parent_span_id="", resource=res, name="orders",
                  kind=SpanKind.SERVER, start_ns=1, end_ns=2,
                  attributes={"faas.trigger": "pubsub", "faas.coldstart": True, "faas.invocation_id": "i-1"})
    assert s.faas is not None
    assert (s.faas.trigger, s.faas.coldstart, s.faas.name, s.faas.invocation_id) == ("pubsub", True, "orders", "i-1")
    assert res.cloud == {"cloud.provider": "aws"}
    c = span({"faas.invoked_name": "notify", "faas.invoked_provider": "aws", "faas.invoked_region": "eu-west-1"},
             SpanKind.CLIENT)
    assert c.faas is not None and (c.faas.invoked_name, c.faas.invoked_region) == ("notify", "eu-west-1")


def test_resource_fields():
    assert (RES.service_name, RES.namespace, RES.environment) == ("users", "shop", "prod")
    assert RES.k8s == {"k8s.pod.name": "users-1"}
    assert Resource.from_attributes({}).service_name == "unknown_service"


def test_error_and_exceptions():
    from agent.model import SpanEvent

    s = span({"http.request.method": "GET", "url.path": "/x", "http.response.status_code": 500},
             events=(SpanEvent("exception", 5, {"exception.type": "ValueError", "exception.message": "boom",
                                                "exception.stacktrace": "Traceback..."}),),
             status_code=2)
    assert s.is_error and s.status_code == StatusCode.ERROR
    assert s.exceptions[0].message == "boom"


@pytest.mark.parametrize(
    "attrs,expected",
    [
        ({"http.request.method": "GET", "url.path": "/"}, None),
        ({"http.request.method": "GET", "url.path": "/", "http.request.header.accept": ["*/*"]}, ()),
        ({"http.request.method": "GET", "url.path": "/",
          "http.request.header.authorization": ["Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig"]},
         ("bearer", "jwt")),
        ({"http.request.method": "GET", "url.path": "/", "http.request.header.authorization": ["Basic dTpw"]},
         ("basic",)),
        ({"http.request.method": "GET", "url.path": "/", "http.request.header.x-api-key": ["k"]}, ("apikey",)),
        ({"http.request.method": "GET", "url.path": "/", "enduser.id": "alice"}, ("enduser",)),
    ],
)
def test_auth_evidence(attrs, expected):
    assert auth_evidence(span(attrs)) == expected


@pytest.mark.parametrize(
    "attrs,expected",
    [
        ({"http.request.method": "GET", "url.scheme": "https", "url.path": "/"}, True),
        ({"http.method": "GET", "http.url": "http://a/b"}, False),
        ({"http.method": "GET", "http.target": "/b"}, None),
        ({"tls.protocol.version": "1.3"}, True),
    ],
)
def test_tls_evidence(attrs, expected):
    assert tls_evidence(span(attrs)) is expected


def test_finding_id_is_stable_and_subject_sensitive():
    a = finding_id("r", Subject(service="s", route="/a"))
    assert a == finding_id("r", Subject(service="s", route="/a"))
    assert a != finding_id("r", Subject(service="s", route="/b"))
    assert a != finding_id("q", Subject(service="s", route="/a"))
    assert Severity.parse("high") > Severity.parse("low")


@pytest.mark.parametrize(
    "subject,label",
    [
        # A client of a service's endpoint: the service is named, the client in brackets.
        (Subject(service="shop", method="GET", route="/orders/{id}", client="user:mallory"),
         "shop GET /orders/{id} (user:mallory)"),
        (Subject(service="shop", client="ip:192.0.2.7", detail="x"), "shop (ip:192.0.2.7) x"),
        # Every other shape is unchanged.
        (Subject(client="gw", server="db"), "gw -> db"),
        (Subject(service="gw", client="gw", server="db", method="GET", route="/a"), "gw -> db GET /a"),
        (Subject(client="user:mallory", method="GET", route="/a"), "user:mallory -> ? GET /a"),
        (Subject(server="db"), "? -> db"),
        (Subject(service="users", method="GET", route="/x"), "users GET /x"),
        (Subject(service="payments", host="api.stripe.com"), "payments api.stripe.com"),
        (Subject(), "-"),
    ],
)
def test_subject_label(subject, label):
    assert subject.label == label
