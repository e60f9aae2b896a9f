"""Route templating: framework syntax conversion and raw-path inference, table-driven."""

from __future__ import annotations

import uuid

import pytest

from enrichers.inventory.routes import PathTemplater, classify_segment, convert_route

# (framework route, OpenAPI route, parameter types)
FRAMEWORK_ROUTES = [
    ("/users/<int:user_id>", "/users/{user_id}", {"user_id": "integer"}),
    ("/users/<user_id>", "/users/{user_id}", {"user_id": "string"}),
    ("/files/<path:name>", "/files/{name}", {"name": "string"}),
    ("/items/<uuid:item>/tags/<tag>", "/items/{item}/tags/{tag}", {"item": "uuid", "tag": "string"}),
    ("/users/:id", "/users/{id}", {"id": "string"}),
    ("/users/:id/posts/:postId", "/users/{id}/posts/{postId}", {"id": "string", "postId": "string"}),
    ("/static/*filepath", "/static/{filepath}", {"filepath": "string"}),
    ("/posts/:id(.:format)", "/posts/{id}", {"id": "string"}),
    ("/users/{id}", "/users/{id}", {"id": "string"}),
    ("/users/{id:[0-9]+}", "/users/{id}", {"id": "integer"}),
    ("/users/{id:int}/{slug?}", "/users/{id}/{slug}", {"id": "integer", "slug": "string"}),
    ("^users/(?P<pk>[0-9]+)/$", "/users/{pk}", {"pk": "string"}),
    ("GET /orders/:id", "/orders/{id}", {"id": "string"}),
    ("/", "/", {}),
    ("/api/hello.world", "/api/hello.world", {}),
    ("/a/:id/b/:id", "/a/{id}/b/{id2}", {"id": "string", "id2": "string"}),
]


@pytest.mark.parametrize(("route", "expected", "types"), FRAMEWORK_ROUTES)
def test_convert_framework_route(route: str, expected: str, types: dict[str, str]) -> None:
    t = convert_route(route)
    assert t.route == expected
    assert t.param_types == types
    assert not t.inferred


# (segment, type or None for literal)
SEGMENTS = [
    ("123", "integer"),
    ("0", "integer"),
    (str(uuid.UUID(int=7)), "uuid"),
    ("550e8400e29b41d4a716446655440000", "uuid"),
    ("01ARZ3NDEKTSV4RRFFQ69G5FAV", "ulid"),
    ("5f2b9c0e1a2b3c4d5e6f7a8b", "hash"),
    ("d41d8cd98f00b204e9800998ecf8427e1234abcd", "hash"),
    ("alice@example.com", "email"),
    ("2024-01-31", "date"),
    ("eyJhbGciOiJIUzI1NiJ9xYz12", "token"),
    ("x" * 200, "token"),
    # do not over-collapse
    ("v1", None),
    ("v2beta1", None),
    ("healthz", None),
    ("hello.world", None),
    ("report.pdf", None),
    ("index.html", None),
    ("users", None),
    ("deadbeef", None),  # a word made of hex letters, no digit
    ("api", None),
    ("my-very-long-article-slug", None),
    ("oauth2", None),
    ("", None),
]


@pytest.mark.parametrize(("segment", "typ"), SEGMENTS)
def test_classify_segment(segment: str, typ: str | None) -> None:
    assert classify_segment(segment) == typ


# (raw path, inferred template) with a fresh templater each
PATHS = [
    ("/users/123", "/users/{id}"),
    ("/users/123/", "/users/{id}"),
    ("/users/123/orders/456", "/users/{id}/orders/{id2}"),
    (f"/carts/{uuid.UUID(int=9)}", "/carts/{uuid}"),
    ("/api/hello.world", "/api/hello.world"),
    ("/v1", "/v1"),
    ("/healthz", "/healthz"),
    ("/", "/"),
    ("//double//slash", "/double/slash"),
    ("/static/app.min.js", "/static/app.min.js"),
    ("/exports/42.json", "/exports/{id}.json"),
    ("/users/alice@example.com/settings", "/users/{email}/settings"),
    ("/reports/2024-01-31", "/reports/{date}"),
    ("/search?q=1", "/search"),
]


@pytest.mark.parametrize(("path", "template"), PATHS)
def test_infer_template(path: str, template: str) -> None:
    assert PathTemplater().template("svc", path).route == template


def test_integer_param_schema_type_is_kept() -> None:
    t = PathTemplater().template("svc", "/users/7/orders/8")
    assert t.param_types == {"id": "integer", "id2": "integer"}


def test_cardinality_collapses_one_position_only() -> None:
    tp = PathTemplater(max_distinct=5)
    for name in ["alice", "bob", "carol", "dave", "erin"]:
        assert tp.template("svc", f"/people/{name}/profile").route == f"/people/{name}/profile"
    # the sixth distinct value at that position collapses it
    assert tp.template("svc", "/people/frank/profile").route == "/people/{param}/profile"
    assert tp.template("svc", "/people/alice/profile").route == "/people/{param}/profile"
    assert tp.retemplate("svc", "/people/bob/profile").route == "/people/{param}/profile"
    # siblings elsewhere stay literal
    assert tp.template("svc", "/health").route == "/health"
    assert tp.template("svc", "/people").route == "/people"
    assert tp.take_collapsed() == {"svc"}


def test_services_are_independent() -> None:
    tp = PathTemplater(max_distinct=2)
    for w in ["a", "b", "c"]:
        tp.template("one", f"/x/{w}")
    assert tp.template("two", "/x/a").route == "/x/a"
    assert tp.template("one", "/x/zzz").route == "/x/{param}"


def test_pinned_literals_survive_collapse() -> None:
    tp = PathTemplater(max_distinct=3)
    tp.pin("svc", ("users", "me"))
    for w in ["w1x", "w2x", "w3x", "w4x", "w5x"]:
        tp.template("svc", f"/users/{w}")
    assert tp.template("svc", "/users/me").route == "/users/me"
    assert tp.template("svc", "/users/someone").route == "/users/{param}"


def test_bounded_whatever_the_input() -> None:
    tp = PathTemplater(max_distinct=10, max_nodes=200)
    routes = set()
    for i in range(20_000):
        path = f"/w{i % 97}x/seg{i * 7 % 1013}y/z{i % 13}q/{i}"
        routes.add(tp.template("svc", path).route)
    assert tp.node_count("svc") <= 2 * 200
    live = {tp.retemplate("svc", r).route for r in routes}
    assert len(live) <= 50


def test_deep_paths_are_cut() -> None:
    tp = PathTemplater(max_depth=4)
    t = tp.template("svc", "/a/b/c/d/e/f/g")
    assert t.route.count("/") == 4


def test_snapshot_restore_round_trip() -> None:
    tp = PathTemplater(max_distinct=2)
    for w in ["a", "b", "c"]:
        tp.template("svc", f"/x/{w}/y")
    tp.template("svc", "/users/5")
    tp2 = PathTemplater(max_distinct=2)
    tp2.restore(tp.snapshot())
    assert tp2.template("svc", "/x/new/y").route == "/x/{param}/y"
    assert tp2.template("svc", "/users/6").route == "/users/{id}"
    assert tp2.node_count("svc") == tp.node_count("svc")


def test_404_probes_do_not_learn_or_collapse() -> None:
    tp = PathTemplater(max_distinct=3)
    assert tp.template("svc", "/users/1").route == "/users/{id}"
    for i in range(50):
        t = tp.template("svc", f"/wp-admin{i}x/setup.php", learn=False)
        assert t.route == "/{param}/{param2}"
    assert tp.template("svc", "/users/2", learn=False).route == "/users/{id}"
    assert tp.template("svc", "/users/abc", learn=False).route == "/users/{id}"
    assert tp.template("svc", "/users/3").param_types == {"id": "integer"}  # not widened by probes
    assert tp.template("svc", "/orders").route == "/orders"  # root never collapsed
    assert tp.take_collapsed() == set()
