"""``apiward report``: the report of a state dir or of recordings, as JSON, Markdown, SARIF or HTML.

JSON and Markdown are :mod:`agent.report`'s. SARIF 2.1.0 puts every finding
in as a result of its rule (rule metadata: title, OWASP category, severity as
``security-severity``, remediation as help), so it can be uploaded to code
scanning tools; the subject (service, method, route) is the result's logical
location, and the OpenAPI spec of the service, when configured, its physical
one. HTML is one self-contained page (no external assets): the call graph as
inline SVG in a layered layout computed here, and the findings, edges and
inventory tables.

Reading a state dir never writes to it, so it is safe next to a running agent.
"""

from __future__ import annotations

import argparse
import html
import sys
from pathlib import Path
from typing import Any

import orjson

from agent.commands.common import add_config_arguments, config_from_args

VERSION = "0.1.0"
INFO_URI = "https://github.com/apiward/apiward"
FORMATS = ("json", "markdown", "sarif", "html")

#: apiward severity -> SARIF level and GitHub ``security-severity`` score.
SARIF_LEVEL = {"critical": "error", "high": "error", "medium": "warning", "low": "note", "info": "note"}
SECURITY_SEVERITY = {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "3.0", "info": "1.0"}


def register(sub: Any) -> None:
    p = sub.add_parser("report", help="write the report of a state dir or of recordings (json, markdown, sarif, html)")
    add_config_arguments(p)
    p.add_argument("--replay", nargs="+", metavar="FILE", help="analyse these recordings instead of a state dir")
    p.add_argument("--format", choices=FORMATS, default="markdown", help="output format (default markdown)")
    p.add_argument("-o", "--output", metavar="FILE", help="write here instead of standard output")
    p.set_defaults(func=main)


def _fail(msg: str) -> int:
    print(f"apiward: {msg}", file=sys.stderr)
    return 2


def load_report(args: argparse.Namespace) -> dict[str, Any]:
    """The report dict (``agent.report.build_report``) from recordings or a state dir."""
    from agent import report

    config = config_from_args(args)
    if args.replay:
        from agent.runtime import Agent

        agent = Agent(config, persist=False)
        try:
            agent.replay(args.replay)
            stats = agent.pipeline.snapshot_stats()
            return report.build_report(agent.state, stats)
        finally:
            agent.stop()
    from agent.state import State, StateStore
    from agent.wiring import build_enrichers

    state_dir = Path(config.state_dir)
    if not (state_dir / "state.db").is_file():
        raise FileNotFoundError(
            f"{state_dir}: no apiward state here (no state.db); give the agent's --state-dir or use --replay FILE."
        )
    state = State(state_dir)
    store = StateStore(state_dir)
    try:
        store.load(state)
        # Parts are created by their enrichers; an empty batch makes each create
        # (and so restore) its part without changing it.
        with state.lock:
            for enricher in build_enrichers(config):
                try:
                    enricher.process([], state)
                except Exception:  # noqa: BLE001 - a part that cannot load is left out
                    pass
            state.batch.clear()
        rep = report.build_report(state)
        rep["stats"] = {"services": sorted(state.services), "spans_processed": sum(state.services.values())}
        return rep
    finally:
        store.close()


def main(args: argparse.Namespace) -> int:
    from agent import report

    try:
        from collectors.replay import RecordingError
    except ModuleNotFoundError:  # pragma: no cover - replay is part of every build
        RecordingError = FileNotFoundError  # type: ignore[misc,assignment]  # noqa: N806
    try:
        rep = load_report(args)
    except RecordingError as exc:
        return _fail(str(exc))
    except FileNotFoundError as exc:
        if exc.filename:
            return _fail(f"{exc.filename}: no such recording file.")
        return _fail(str(exc))
    specs = dict(config_from_args(args).specs)
    if args.format == "json":
        data = orjson.dumps(rep, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS) + b"\n"
    elif args.format == "markdown":
        data = report.render_markdown(rep).encode()
    elif args.format == "sarif":
        data = orjson.dumps(to_sarif(rep, specs), option=orjson.OPT_INDENT_2) + b"\n"
    else:
        data = render_html(rep).encode()
    if args.output:
        try:
            Path(args.output).write_bytes(data)
        except OSError as exc:
            return _fail(f"{args.output}: cannot write the report ({exc.strerror}).")
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    return 0


# ------------------------------------------------------------------ SARIF


def _rule_name(rule_id: str) -> str:
    tail = rule_id.rsplit(".", 1)[-1]
    return "".join(w.capitalize() for w in tail.replace("-", "_").split("_") if w) or rule_id


def to_sarif(rep: dict[str, Any], specs: dict[str, str] | None = None) -> dict[str, Any]:
    """SARIF 2.1.0: one run, the rules seen and one result per finding."""
    specs = specs or {}
    rules: list[dict[str, Any]] = []
    index: dict[str, int] = {}
    results: list[dict[str, Any]] = []
    roots = {row["id"] for row in rep.get("incidents") or ()}
    for f in rep.get("findings", []):
        rid = f["rule"]
        sev = f["severity"]
        if rid not in index:
            index[rid] = len(rules)
            tags = ["security", "api"]
            if f.get("owasp"):
                tags.append(f"OWASP-{f['owasp']}")
            tags += [str(c) for c in f.get("compliance") or []]
            rule: dict[str, Any] = {
                "id": rid,
                "name": _rule_name(rid),
                "shortDescription": {"text": f["title"]},
                "fullDescription": {"text": f.get("explanation") or f["title"]},
                "defaultConfiguration": {"level": SARIF_LEVEL.get(sev, "warning")},
                "helpUri": f"{INFO_URI}/blob/main/docs/findings.md",
                "properties": {
                    "tags": tags,
                    "security-severity": SECURITY_SEVERITY.get(sev, "5.0"),
                    "precision": "high" if f.get("confidence", 1) >= 0.8 else "medium",
                },
            }
            if f.get("remediation"):
                rule["help"] = {"text": f["remediation"], "markdown": f["remediation"]}
            if f.get("owasp"):
                rule["properties"]["owasp"] = f["owasp"]
            rules.append(rule)
        elif float(SECURITY_SEVERITY.get(sev, 0)) > float(rules[index[rid]]["properties"]["security-severity"]):
            rules[index[rid]]["properties"]["security-severity"] = SECURITY_SEVERITY[sev]
        subj = f.get("subject") or {}
        service = subj.get("service") or subj.get("server") or ""
        op = " ".join(x for x in (subj.get("method", ""), subj.get("route", "")) if x)
        name = f.get("subject_label") or "-"
        location: dict[str, Any] = {
            "logicalLocations": [{
                "name": op or name,
                "fullyQualifiedName": f"{service}:{op}" if service and op else name,
                "kind": "member" if op else "module",
            }],
            "message": {"text": name},
        }
        if service in specs:
            location["physicalLocation"] = {"artifactLocation": {"uri": Path(specs[service]).as_posix()}}
        message = f["title"]
        if f.get("explanation"):
            message += f". {f['explanation']}"
        result: dict[str, Any] = {
            "ruleId": rid,
            "ruleIndex": index[rid],
            "level": SARIF_LEVEL.get(sev, "warning"),
            "message": {"text": message},
            "locations": [location],
            "partialFingerprints": {"apiwardFindingId/v1": f["id"]},
            "occurrenceCount": int(f.get("count", 1)),
            "properties": {
                "severity": sev,
                "owasp": f.get("owasp") or "",
                "confidence": f.get("confidence", 1.0),
                "count": f.get("count", 1),
                "firstSeen": f.get("first_seen", ""),
                "lastSeen": f.get("last_seen", ""),
                "subject": subj,
                "traceIds": f.get("trace_ids") or [],
                "evidence": f.get("evidence") or {},
            },
        }
        if f.get("incident"):
            # Findings of one incident (one attack or leak seen at several hops) share it;
            # its root is the entry hop, the others are marked so a viewer can fold them.
            result["properties"]["incident"] = f["incident"]
            if roots:
                result["properties"]["incidentRoot"] = f["id"] in roots
        if f.get("acknowledged") or f.get("muted"):
            result["suppressions"] = [{"kind": "external", "status": "accepted",
                                       "justification": "muted" if f.get("muted") else "acknowledged"}]
        results.append(result)
    return {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "apiward",
                "semanticVersion": VERSION,
                "version": VERSION,
                "informationUri": INFO_URI,
                "rules": rules,
            }},
            "results": results,
            "columnKind": "unicodeCodePoints",
        }],
    }


# ------------------------------------------------------------------ HTML


def layered_layout(nodes: list[str], edges: list[tuple[str, str]]) -> dict[str, tuple[int, int]]:
    """Node -> (layer, position in layer): callers left of callees, cycles broken.

    Layer of a node = length of the longest path to it from a node nobody
    calls (a Sugiyama-style first step, without crossing minimisation beyond
    ordering each layer by the mean position of its callers).
    """
    out: dict[str, list[str]] = {n: [] for n in nodes}
    indeg: dict[str, int] = dict.fromkeys(nodes, 0)
    for a, b in edges:
        if a == b or a not in out or b not in out:
            continue
        out[a].append(b)
        indeg[b] += 1
    layer: dict[str, int] = {}
    remaining = dict(indeg)
    ready = sorted(n for n in nodes if remaining[n] == 0)
    order: list[str] = []
    while len(order) < len(nodes):
        if not ready:  # a cycle: break it at the unplaced node with the fewest callers left
            pick = min((n for n in nodes if n not in layer and n not in order),
                       key=lambda n: (remaining[n], n))
            ready = [pick]
        n = ready.pop(0)
        if n in order:
            continue
        order.append(n)
        layer.setdefault(n, 0)
        for m in out[n]:
            if m in order:
                continue
            layer[m] = max(layer.get(m, 0), layer[n] + 1)
            remaining[m] -= 1
            if remaining[m] == 0:
                ready.append(m)
    columns: dict[int, list[str]] = {}
    for n in order:
        columns.setdefault(layer[n], []).append(n)
    pos: dict[str, tuple[int, int]] = {}
    callers: dict[str, list[str]] = {n: [] for n in nodes}
    for a, b in edges:
        if b in callers and a in out:
            callers[b].append(a)
    for li in sorted(columns):
        col = columns[li]
        if li > 0:
            def key(n: str) -> tuple[float, str]:
                ps = [pos[c][1] for c in callers[n] if c in pos]
                return (sum(ps) / len(ps) if ps else 1e9, n)
            col.sort(key=key)
        for i, n in enumerate(col):
            pos[n] = (li, i)
    return pos


_KIND_COLOUR = {
    "service": "#4c78a8", "database": "#b279a2", "external": "#e45756", "function": "#54a24b",
    "client": "#9d755d", "ingress": "#9d755d", "queue": "#f58518",
}
_VERDICT_COLOUR = {"deny": "#d62728", "denied": "#d62728", "violation": "#d62728",
                   "allow": "#2ca02c", "allowed": "#2ca02c"}


def render_svg(graph: dict[str, Any]) -> str:
    nodes = {str(n["id"]): n for n in graph.get("nodes", [])}
    edges = graph.get("edges", [])
    for e in edges:
        for k in ("client", "server"):
            nodes.setdefault(str(e[k]), {"id": e[k], "kind": "service"})
    if not nodes:
        return "<p>No services seen.</p>"
    pos = layered_layout(sorted(nodes), [(str(e["client"]), str(e["server"])) for e in edges])
    col_w, row_h, box_w, box_h, pad = 230, 70, 170, 36, 20
    width = pad * 2 + (max(p[0] for p in pos.values()) + 1) * col_w
    height = pad * 2 + (max(p[1] for p in pos.values()) + 1) * row_h

    def xy(n: str) -> tuple[int, int]:
        li, i = pos[n]
        return pad + li * col_w, pad + i * row_h

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="call graph">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/>'
        "</marker></defs>",
    ]
    for e in edges:
        a, b = str(e["client"]), str(e["server"])
        x1, y1 = xy(a)
        x2, y2 = xy(b)
        sx, sy = x1 + box_w, y1 + box_h // 2
        tx, ty = x2, y2 + box_h // 2
        if pos[b][0] <= pos[a][0]:  # same layer or backwards: loop around below
            sx, sy, tx, ty = x1 + box_w // 2, y1 + box_h, x2 + box_w // 2, y2 + box_h
            d = f"M {sx} {sy} C {sx} {sy + 40}, {tx} {ty + 40}, {tx} {ty}"
        else:
            mx = (sx + tx) // 2
            d = f"M {sx} {sy} C {mx} {sy}, {mx} {ty}, {tx} {ty}"
        colour = _VERDICT_COLOUR.get(str(e.get("verdict", "")).lower(), "#888")
        if e.get("errors"):
            colour = "#ff7f0e" if colour == "#888" else colour
        title = html.escape(f"{a} -> {b} ({e.get('connection_type', '')}): {e.get('calls', 0)} calls, "
                            f"{e.get('errors', 0)} errors, verdict {e.get('verdict', 'n/a')}")
        parts.append(f'<path d="{d}" fill="none" stroke="{colour}" stroke-width="2" '
                     f'marker-end="url(#arrow)"><title>{title}</title></path>')
    for nid, n in sorted(nodes.items()):
        x, y = xy(nid)
        kind = str(n.get("kind", "service"))
        label = nid if len(nid) <= 24 else nid[:22] + "…"
        parts.append(
            f'<g><rect x="{x}" y="{y}" width="{box_w}" height="{box_h}" rx="6" '
            f'fill="{_KIND_COLOUR.get(kind, "#777")}"><title>{html.escape(nid)} ({html.escape(kind)})</title></rect>'
            f'<text x="{x + box_w // 2}" y="{y + box_h // 2 + 5}" text-anchor="middle" '
            f'fill="#fff" font-size="13">{html.escape(label)}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _table(headers: list[str], rows: list[list[Any]], cls: str = "") -> str:
    if not rows:
        return "<p>None.</p>"
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape('' if v is None else str(v))}</td>" for v in r) + "</tr>"
        for r in rows
    )
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em;color:#222}
h1{margin-bottom:0} .sub{color:#666;margin-top:.2em}
table{border-collapse:collapse;margin:1em 0;font-size:14px;width:100%}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f4f4f4} tr:nth-child(even){background:#fafafa}
.graph{overflow:auto;border:1px solid #ddd;padding:8px}
.sev-critical{color:#fff;background:#8b0000}.sev-high{color:#fff;background:#d62728}
.sev-medium{background:#ffbf00}.sev-low{background:#c6e2ff}.sev-info{background:#eee}
tr.hop td{color:#555;font-size:13px} tr.hop td:nth-child(4){padding-left:1.6em}
"""


def _by_incident(rep: dict[str, Any]) -> list[tuple[dict[str, Any], int]]:
    """The findings in incident order: each incident's root (in the order of
    ``rep["incidents"]``), then its hops (``(finding, 1)``); findings no incident row
    names (a report without them) keep their order at the end."""
    by_id = {f["id"]: f for f in rep.get("findings", [])}
    out: list[tuple[dict[str, Any], int]] = []
    for row in rep.get("incidents") or ():
        root = by_id.pop(row["id"], None)
        if root is None:
            continue
        out.append((root, 0))
        out.extend((by_id.pop(h["id"]), 1) for h in row.get("hops") or () if h["id"] in by_id)
    out.extend((f, 0) for f in by_id.values())
    return out


def _finding_row(f: dict[str, Any], hop: int) -> str:
    subject = html.escape(f.get("subject_label", ""))
    if hop:
        subject = f"&#8627; {subject}"  # a hop of the incident above
    cls = ' class="hop"' if hop else ""
    return (
        f'<tr{cls}><td class="sev-{html.escape(f["severity"])}">'
        f"{html.escape(f['severity'])}</td>"
        f"<td>{html.escape(f['rule'])}</td><td>{html.escape(f.get('owasp') or '')}</td>"
        f"<td>{subject}</td><td>{f.get('count', 0)}</td>"
        f"<td>{html.escape(f['title'])}</td><td>{html.escape(f.get('remediation') or '')}</td>"
        f"<td>{html.escape(f.get('last_seen', ''))}</td></tr>"
    )


def render_html(rep: dict[str, Any]) -> str:
    """One self-contained page: summary, the graph as inline SVG, and the tables."""
    findings = rep.get("findings", [])
    graph = rep.get("graph", {"nodes": [], "edges": []})
    inv = rep.get("inventory", [])
    by_sev: dict[str, int] = {}
    for f in findings:
        by_sev[f["severity"]] = by_sev.get(f["severity"], 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(by_sev.items())) or "none"
    frows = "".join(_finding_row(f, hop) for f, hop in _by_incident(rep))
    ftable = (
        "<table><thead><tr><th>severity</th><th>rule</th><th>OWASP</th><th>subject</th><th>count</th>"
        f"<th>title</th><th>fix</th><th>last seen</th></tr></thead><tbody>{frows}</tbody></table>"
        if findings else "<p>No findings.</p>"
    )
    etable = _table(
        ["client", "server", "type", "calls", "errors", "p95 ms", "TLS", "auth", "verdict"],
        [[e.get("client"), e.get("server"), e.get("connection_type", ""), e.get("calls", 0),
          e.get("errors", 0), e.get("p95_ms", ""), e.get("tls", ""),
          ", ".join(e["auth"]) if isinstance(e.get("auth"), list) else e.get("auth", ""),
          e.get("verdict", "")] for e in graph.get("edges", [])],
    )
    itable = _table(
        ["service", "method", "route", "calls", "lifecycle", "sensitive"],
        [[ep.get("service"), ep.get("method"), ep.get("route"), ep.get("calls", 0), ep.get("lifecycle", ""),
          ", ".join(ep.get("sensitive_types") or [])] for ep in inv],
    )
    st = rep.get("stats") or {}
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>apiward report</title><style>{_CSS}</style></head><body>"
        "<h1>apiward report</h1>"
        f"<p class=\"sub\">{len(st.get('services', []))} services, {len(graph.get('edges', []))} edges, "
        f"{len(inv)} endpoints; findings: {html.escape(summary)}.</p>"
        f"<h2>Findings</h2>{ftable}"
        f"<h2>Service graph</h2><div class=\"graph\">{render_svg(graph)}</div>{etable}"
        f"<h2>API inventory</h2>{itable}"
        "</body></html>\n"
    )
