"""OpenAPI 3.1 reconstructed from observed traffic, and a traffic-vs-spec diff.

:func:`reconstruct` writes one document per service from the inventory records:
paths and methods, path parameters with inferred types, query parameters
seen, responses by status code (with the content types seen), and the security
schemes the traffic showed. Routes of the same shape (``/users/{id}`` from a
framework and ``/users/{user_id}`` inferred from a 404) are merged, since
OpenAPI forbids equivalent templated paths. The result passes
``openapi-spec-validator``.

:func:`diff` compares traffic with a spec: operations the traffic adds (shadow),
operations it leaves unused, and deprecated operations still called.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from agent.model import ns_to_iso
from enrichers.inventory.enricher import EndpointRecord
from enrichers.inventory.routes import PARAM_SCHEMAS
from enrichers.inventory.specs import Spec, path_shape

OPENAPI_VERSION = "3.1.0"
_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_PARAM = re.compile(r"\{([^{}]+)\}")
_QUERY_NAME = re.compile(r"^[A-Za-z0-9_.\-\[\]]{1,64}$")

#: auth_evidence scheme -> (component name, security scheme object)
SECURITY_SCHEMES: dict[str, tuple[str, dict[str, Any]]] = {
    "bearer": ("bearerAuth", {"type": "http", "scheme": "bearer"}),
    "jwt": ("bearerAuth", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}),
    "basic": ("basicAuth", {"type": "http", "scheme": "basic"}),
    "digest": ("digestAuth", {"type": "http", "scheme": "digest"}),
    "apikey": ("apiKeyAuth", {"type": "apiKey", "in": "header", "name": "X-API-Key"}),
    "cookie": ("cookieAuth", {"type": "apiKey", "in": "cookie", "name": "session"}),
    "mtls": ("mutualTLS", {"type": "mutualTLS"}),
}


def _params(route: str) -> list[str]:
    return _PARAM.findall(route)


def _merge_group(recs: list[EndpointRecord]) -> dict[str, Any]:
    """Facts of several records of one (shape, method), summed."""
    best = max(recs, key=lambda r: (not r.inferred, r.calls))
    status: dict[int, int] = {}
    query: set[str] = set()
    req: set[str] = set()
    resp: set[str] = set()
    auth: set[str] = set()
    calls = unauth = 0
    first = last = 0
    for r in recs:
        for code, n in r.status.items():
            status[code] = status.get(code, 0) + n
        query |= r.query_params
        req |= r.request_types
        resp |= r.response_types
        auth |= set(r.auth)
        calls += r.calls
        unauth += r.unauthenticated
        first = min(x for x in (first, r.first_ns) if x) if r.first_ns else first
        last = max(last, r.last_ns)
    return {
        "best": best, "status": status, "query": query, "req": req, "resp": resp,
        "auth": auth, "calls": calls, "unauth": unauth, "first": first, "last": last,
    }


def reconstruct(records: Iterable[EndpointRecord], service: str) -> dict[str, Any]:
    """An OpenAPI 3.1 document of what ``service`` was seen serving."""
    groups: dict[tuple[str, ...], dict[str, list[EndpointRecord]]] = {}
    canonical: dict[tuple[str, ...], EndpointRecord] = {}
    for r in records:
        if r.service != service or r.protocol != "http" or r.method.lower() not in _METHODS:
            continue
        shape = path_shape(r.route)
        groups.setdefault(shape, {}).setdefault(r.method.lower(), []).append(r)
        cur = canonical.get(shape)
        if cur is None or (cur.inferred, -cur.calls) > (r.inferred, -r.calls):
            canonical[shape] = r
    paths: dict[str, Any] = {}
    schemes: dict[str, dict[str, Any]] = {}
    op_ids: set[str] = set()
    for shape in sorted(groups, key=lambda s: canonical[s].route):
        route = canonical[shape].route
        names = _params(route)
        item: dict[str, Any] = {}
        for method in sorted(groups[shape], key=_METHODS.index):
            g = _merge_group(groups[shape][method])
            best: EndpointRecord = g["best"]
            best_names = _params(best.route)
            best_types = best.param_types()  # declared, else learnt from the values seen
            parameters: list[dict[str, Any]] = []
            for i, name in enumerate(names):
                typ = best_types.get(best_names[i], "string") if i < len(best_names) else "string"
                parameters.append({
                    "name": name, "in": "path", "required": True,
                    "schema": dict(PARAM_SCHEMAS.get(typ, PARAM_SCHEMAS["string"])),
                })
            for q in sorted(g["query"]):
                if _QUERY_NAME.match(q):
                    parameters.append({"name": q, "in": "query", "required": False,
                                       "schema": {"type": "string"}})
            responses: dict[str, Any] = {}
            for code, n in sorted(g["status"].items()):
                if not 100 <= code <= 599:
                    continue
                resp: dict[str, Any] = {"description": f"Observed {n} time{'s' if n != 1 else ''}."}
                if 200 <= code < 300 and g["resp"] and code != 204:
                    resp["content"] = {ct: {} for ct in sorted(g["resp"])}
                responses[str(code)] = resp
            if not responses:
                responses["default"] = {"description": "No status code was observed."}
            op_id = _op_id(method, route, op_ids)
            op: dict[str, Any] = {
                "operationId": op_id,
                "summary": f"Observed {g['calls']} call{'s' if g['calls'] != 1 else ''}",
                "responses": responses,
                "x-apiward": {
                    "calls": g["calls"],
                    "first_seen": ns_to_iso(g["first"]),
                    "last_seen": ns_to_iso(g["last"]),
                    "inferred_route": all(r.inferred for r in groups[shape][method]),
                },
            }
            if parameters:
                op["parameters"] = parameters
            if g["req"] and method in ("post", "put", "patch", "delete"):
                op["requestBody"] = {"content": {ct: {} for ct in sorted(g["req"])}}
            security: list[dict[str, list[str]]] = []
            for a in sorted(g["auth"]):
                found = SECURITY_SCHEMES.get(a)
                if found is None:
                    continue
                name, obj = found
                if name not in schemes or a == "jwt":
                    schemes[name] = dict(obj)
                if {name: []} not in security:
                    security.append({name: []})
            if security:
                if g["unauth"]:
                    security.append({})
                op["security"] = security
            item[method] = op
        paths[route] = item
    doc: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": f"{service} (reconstructed from observed traffic)",
            "version": "observed",
            "description": "Written by apiward from the API calls it observed; review before use.",
        },
        "paths": paths,
    }
    if schemes:
        doc["components"] = {"securitySchemes": schemes}
    return doc


def _op_id(method: str, route: str, used: set[str]) -> str:
    words = [w for w in re.split(r"[^A-Za-z0-9]+", route) if w]
    base = method + "".join(w[:1].upper() + w[1:] for w in words) or method
    n, i = base, 2
    while n in used:
        n, i = f"{base}{i}", i + 1
    used.add(n)
    return n


def diff(records: Iterable[EndpointRecord], service: str, spec: Spec) -> dict[str, list[dict[str, Any]]]:
    """What traffic adds to a spec, leaves unused, and still calls though deprecated."""
    added: list[dict[str, Any]] = []
    used: dict[str, int] = {}
    for r in sorted(records, key=lambda r: (r.route, r.method)):
        if r.service != service or r.protocol != "http" or r.calls == 0:
            continue
        op = spec.match(r.method, r.route)
        if op is None:
            if r.method == "OPTIONS" and spec.has_path(r.route):
                continue
            served = any(c not in (404, 405) for c in r.status) or not r.status
            added.append({"method": r.method, "route": r.route, "calls": r.calls,
                          "served": served, "callers": sorted(r.callers)})
        else:
            used[op.key] = used.get(op.key, 0) + r.calls
    unused = [{"method": op.method, "route": op.path, "operation_id": op.operation_id}
              for op in spec.operations if op.key not in used]
    deprecated = [{"method": op.method, "route": op.path, "calls": used[op.key]}
                  for op in spec.operations if op.deprecated and op.key in used]
    return {"added": added, "unused": unused, "deprecated_in_use": deprecated}


def render_diff(d: dict[str, list[dict[str, Any]]], service: str, spec_path: str) -> str:
    lines = [f"Traffic of {service} compared with {spec_path}:"]
    lines.append(f"\nAdded by traffic, not in the spec ({len(d['added'])}):")
    for a in d["added"]:
        note = "" if a["served"] else " (only 404/405 answers)"
        who = f" from {', '.join(a['callers'])}" if a["callers"] else ""
        lines.append(f"  + {a['method']} {a['route']}  {a['calls']} calls{who}{note}")
    lines.append(f"\nIn the spec, never called ({len(d['unused'])}):")
    for u in d["unused"]:
        lines.append(f"  - {u['method']} {u['route']}")
    lines.append(f"\nDeprecated, still called ({len(d['deprecated_in_use'])}):")
    for z in d["deprecated_in_use"]:
        lines.append(f"  ! {z['method']} {z['route']}  {z['calls']} calls")
    return "\n".join(lines) + "\n"
