"""Views of State shared by the query API, ``replay --report`` and ``report``.

Each enricher's State part renders itself (``report()``); this module only
assembles, filters and formats. Every view is computed under ``state.lock`` and
returns plain JSON-able data.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agent.model import Severity

if TYPE_CHECKING:
    from agent.state import FindingRecord, State


#: the lifecycles the inventory gives an endpoint (``unused``: a spec operation never called)
LIFECYCLES = ("new", "active", "shadow", "zombie", "dormant", "revived", "unused")
#: trace summary statuses
TRACE_STATUSES = ("ok", "error")
#: how ``findings_view`` can group its rows
FINDING_GROUPS = ("incident",)


class FilterError(ValueError):
    """A query filter with a value it cannot take; the message lists the allowed ones
    (the query API answers 400 with it)."""


def _check(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value and value not in allowed:
        raise FilterError(f"unknown {name} {value!r}: use one of {', '.join(allowed)}")


def _severity(text: str) -> Severity | None:
    if not text:
        return None
    try:
        return Severity.parse(text)
    except KeyError:
        raise FilterError(
            f"unknown severity {text!r}: use one of {', '.join(s.label for s in Severity)}"
        ) from None


def _part_report(state: State, name: str, default: Any) -> Any:
    part = state.parts.get(name)
    fn = getattr(part, "report", None)
    if fn is None:
        return default
    return fn()


def graph_view(state: State) -> dict[str, Any]:
    with state.lock:
        g = _part_report(state, "callgraph", None)
        if g is None:
            nodes = [{"id": s, "kind": "service"} for s in sorted(state.services)]
            return {"nodes": nodes, "edges": []}
        zt = state.parts.get("zerotrust")
        verdict = getattr(zt, "verdict", None)
        if verdict is not None:
            for e in g.get("edges", []):
                e.setdefault("verdict", verdict(e["client"], e["server"], e.get("connection_type", "http")))
        return dict(g)


def inventory_view(state: State, *, service: str = "", lifecycle: str = "") -> list[dict[str, Any]]:
    """The inventory, filtered; :class:`FilterError` for an unknown lifecycle."""
    _check("lifecycle", lifecycle, LIFECYCLES)
    with state.lock:
        inv = list(_part_report(state, "inventory", []))
    if service:
        inv = [e for e in inv if e.get("service") == service]
    if lifecycle:
        inv = [e for e in inv if e.get("lifecycle") == lifecycle]
    return inv


def endpoint_view(state: State, service: str, method: str, route: str) -> dict[str, Any] | None:
    with state.lock:
        part = state.parts.get("inventory")
        fn = getattr(part, "endpoint", None)
        d = fn(service, method, route) if fn is not None else None
        if d is None:
            return None
        d = dict(d)
        d["findings"] = [
            r.to_dict()
            for r in state.findings.records()
            if r.finding.subject.service == service
            and (not r.finding.subject.route or r.finding.subject.route == route)
            and (not r.finding.subject.method or r.finding.subject.method == method)
        ]
        return d


def findings_view(
    state: State,
    *,
    severity: str = "",
    rule: str = "",
    service: str = "",
    owasp: str = "",
    include_muted: bool = True,
    group: str = "",
) -> list[dict[str, Any]]:
    """Findings at ``severity`` or worse, by rule prefix, service, OWASP id;
    :class:`FilterError` for an unknown severity or group.

    ``group="incident"``: one row per incident with a finding that passes the filters:
    the incident's root finding with ``hops`` (its other findings: id, rule, subject
    label, severity, count, flags), ``incident_size``, ``incident_severity`` (the worst
    of its findings) and ``total_count`` (the sum of their counts)."""
    _check("group", group, FINDING_GROUPS)
    min_sev = _severity(severity)

    def wanted(r: FindingRecord) -> bool:
        f = r.finding
        return not (
            (min_sev is not None and f.severity < min_sev)
            or (rule and not f.rule.startswith(rule))
            or (service and service not in (f.subject.service, f.subject.client, f.subject.server))
            or (owasp and (f.owasp or "") != owasp)
            or (r.muted and not include_muted)
        )

    with state.lock:
        if group:
            out = [_incident_row(members) for members in state.findings.incidents() if any(map(wanted, members))]
        else:
            out = [r.to_dict() for r in state.findings.records() if wanted(r)]
    sev = "incident_severity" if group else "severity"
    count = "total_count" if group else "count"
    out.sort(key=lambda d: (-Severity.parse(d[sev]), -d[count], d["rule"], d["id"]))
    return out


def _incident_row(members: list[FindingRecord]) -> dict[str, Any]:
    """The row of one incident: its root's finding (``members[0]``) with the others as hops."""
    d = members[0].to_dict()
    d["hops"] = [
        {
            "id": r.id,
            "rule": r.finding.rule,
            "subject_label": r.finding.subject.label,
            "severity": r.finding.severity.label,
            "count": r.finding.count,
            "acknowledged": r.acknowledged,
            "muted": r.muted,
        }
        for r in members[1:]
    ]
    d["incident_size"] = len(members)
    d["incident_severity"] = max(r.finding.severity for r in members).label
    d["total_count"] = sum(r.finding.count for r in members)
    return d


def traces_view(state: State, **filters: str) -> list[dict[str, Any]]:
    """Trace summaries; :class:`FilterError` for an unknown ``status``."""
    _check("status", filters.get("status", ""), TRACE_STATUSES)
    with state.lock:
        store = state.parts.get("traces")
        return store.list(**filters) if store is not None else []


def trace_view(state: State, trace_id: str) -> dict[str, Any] | None:
    with state.lock:
        store = state.parts.get("traces")
        return store.get(trace_id) if store is not None else None


def verdicts_view(state: State) -> list[dict[str, Any]]:
    with state.lock:
        return list(_part_report(state, "zerotrust", []))


def spec_errors_view(state: State) -> list[Any]:
    """The configured specs that could not be used, as the inventory part keeps them
    (``spec_errors``: one sentence per spec, naming the service, the file and what is
    wrong); empty without an inventory."""
    with state.lock:
        errors = getattr(state.parts.get("inventory"), "spec_errors", None)
        return [e if isinstance(e, (str, dict)) else str(e) for e in errors or ()]


def build_report(state: State, stats: dict[str, Any] | None = None) -> dict[str, Any]:
    """The report object of ``replay --report json`` and ``report --format json``."""
    out: dict[str, Any] = {
        "graph": graph_view(state),
        "inventory": inventory_view(state),
        "findings": findings_view(state),
        "incidents": findings_view(state, group="incident"),
        "spec_errors": spec_errors_view(state),
    }
    if stats is not None:
        out["stats"] = stats
    return out


def _md_escape(s: Any) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def render_markdown(rep: dict[str, Any]) -> str:
    lines = ["# apiward report", ""]
    st = rep.get("stats")
    if st:
        lines += [
            f"Spans analysed: {st.get('spans_processed', 0)}; services: {len(st.get('services', []))}; "
            f"findings: {len(rep['findings'])}.",
            "",
        ]
    lines += ["## Findings", ""]
    incidents = rep.get("incidents")
    if incidents is None:  # a report made before incidents: one incident per finding
        incidents = [{**f, "hops": []} for f in rep["findings"]]
    if incidents:
        lines += [
            f"{len(incidents)} incidents from {len(rep['findings'])} findings: the findings of one "
            "request at several hops of a call chain are one incident, listed at its root (the "
            "earliest hop) with its other hops.",
            "",
            "| severity | rule | OWASP | subject | count | title | other hops |",
            "|---|---|---|---|---|---|---|",
        ]
        for f in incidents:
            hops = "; ".join(
                (f"{h['rule']}: " if h["rule"] != f["rule"] else "") + f"{h['subject_label']} ({h['count']})"
                for h in f.get("hops") or ()
            )
            lines.append(
                f"| {f['severity']} | {_md_escape(f['rule'])} | {f['owasp'] or ''} | "
                f"{_md_escape(f.get('subject_label', ''))} | {f['count']} | {_md_escape(f['title'])} | "
                f"{_md_escape(hops)} |"
            )
    else:
        lines.append("No findings.")
    lines += ["", "## Service graph", ""]
    g = rep["graph"]
    node_list = ", ".join(f"{n['id']} ({n['kind']})" for n in g["nodes"]) or "none"
    lines.append(f"Nodes: {node_list}")
    lines.append("")
    if g["edges"]:
        lines += ["| client | server | type | calls | errors | p95 ms | TLS | auth |", "|---|---|---|---|---|---|---|---|"]
        for e in g["edges"]:
            lines.append(
                f"| {_md_escape(e['client'])} | {_md_escape(e['server'])} | {e.get('connection_type', '')} | "
                f"{e.get('calls', 0)} | {e.get('errors', 0)} | {e.get('p95_ms', '')} | {e.get('tls', '')} | "
                f"{_md_escape(', '.join(e.get('auth') or []) if isinstance(e.get('auth'), list) else e.get('auth', ''))} |"
            )
    lines += ["", "## API inventory", ""]
    if rep["inventory"]:
        lines += ["| service | method | route | calls | lifecycle | sensitive |", "|---|---|---|---|---|---|"]
        for ep in rep["inventory"]:
            lines.append(
                f"| {_md_escape(ep['service'])} | {ep['method']} | {_md_escape(ep['route'])} | {ep.get('calls', 0)} | "
                f"{ep.get('lifecycle', '')} | {_md_escape(', '.join(ep.get('sensitive_types') or []))} |"
            )
    else:
        lines.append("No endpoints.")
    if rep.get("spec_errors"):
        lines += ["", "## Spec errors", ""]
        lines += [f"- {_md_escape(e)}" for e in rep["spec_errors"]]
    return "\n".join(lines) + "\n"
