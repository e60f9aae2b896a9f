"""Replacing detected values in a span, for the redacting forwarder.

:func:`redact_span` takes a span and the detections the enricher published for it
(``state.batch.sensitive[span_id]``) and returns a copy whose attribute values have
each detected substring replaced in place: by its masked form (``mask``, the
default), by ``[TYPE:hash]`` (``hash``), or with the whole attribute removed
(``drop``). The action is chosen per type. A detection's ``where`` may name a value
inside a map attribute by its key path (``user.profile.email`` in the map
``user.profile``); an integer found sensitive becomes the replacement string.

:func:`blank_span` is for spans that were never scanned (the scan of their batch
failed): every string value, and every integer long enough to be scanned, becomes
:data:`UNSCANNED`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from agent.model import Resource, Span, SpanEvent, make_span
from enrichers.sensitive.enricher import MIN_SCANNED_INT, SKIP_KEYS

ACTIONS = ("mask", "hash", "drop")
DEFAULT_ACTION = "mask"
#: What replaces every value of a span whose batch could not be scanned.
UNSCANNED = "[apiward: not scanned]"


def _replace_in(text: str, dets: Sequence[Any], actions: Mapping[str, str]) -> str | None:
    """``text`` with detections replaced, or ``None`` when the attribute must be dropped."""
    parts: list[str] = []
    pos = 0
    for d in sorted(dets, key=lambda d: d.start):
        act = actions.get(d.type, DEFAULT_ACTION)
        if act == "drop":
            return None
        if d.start < pos or d.end > len(text):
            continue
        parts.append(text[pos : d.start])
        parts.append(d.masked if act == "mask" else f"[{d.type}:{d.hash}]")
        pos = d.end
    parts.append(text[pos:])
    return "".join(parts)


def _nested(attrs: Mapping[str, Any], path: str) -> tuple[str, str] | None:
    """``(key, rest)`` when ``path`` names a value inside the map attribute ``key``."""
    dot = path.find(".")
    while dot > 0:
        head = path[:dot]
        if isinstance(attrs.get(head), Mapping):
            return head, path[dot + 1 :]
        dot = path.find(".", dot + 1)
    return None


def _scanned_int(v: Any) -> bool:
    return type(v) is int and not -MIN_SCANNED_INT < v < MIN_SCANNED_INT


def _redact_attrs(
    attrs: Mapping[str, Any], by_key: Mapping[str, list[Any]], actions: Mapping[str, str]
) -> dict[str, Any]:
    out = dict(attrs)
    inner: dict[str, dict[str, list[Any]]] = {}
    for key, dets in by_key.items():
        if key not in out:
            nested = _nested(out, key)
            if nested is not None:
                inner.setdefault(nested[0], {})[nested[1]] = dets
            continue
        v = out[key]
        if _scanned_int(v):
            v = str(v)
        if isinstance(v, str):
            new = _replace_in(v, dets, actions)
            if new is None:
                del out[key]
            else:
                out[key] = new
        elif isinstance(v, (list, tuple)):
            items = list(v)
            dropped = False
            by_index: dict[int, list[Any]] = {}
            for d in dets:
                by_index.setdefault(d.index, []).append(d)
            for i, ds in by_index.items():
                if 0 <= i < len(items) and (isinstance(items[i], str) or _scanned_int(items[i])):
                    new = _replace_in(str(items[i]), ds, actions)
                    if new is None:
                        dropped = True
                        break
                    items[i] = new
            if dropped:
                del out[key]
            else:
                out[key] = items
    for key, sub in inner.items():
        out[key] = _redact_attrs(out[key], sub, actions)
    return out


def _blank(v: Any) -> Any:
    if isinstance(v, (str, bytes)) or _scanned_int(v):
        return UNSCANNED
    if isinstance(v, (list, tuple)):
        return [_blank(x) for x in v]
    if isinstance(v, Mapping):
        return {k: _blank(x) for k, x in v.items()}
    return v


def blank_span(span: Span, resources: dict[int, Resource] | None = None) -> Span:
    """A copy of ``span`` that cannot carry a raw value: its name, status message and
    every string (and scannable integer) value of its, its events', links' and
    resource's attributes, nested ones included, replaced by :data:`UNSCANNED`.
    Ids, kind, timings, status code, event names and the attributes the scanner never
    reads (protocol facts such as ``http.route`` and ``service.name``) are kept.
    ``resources`` memoises blanked resources by ``id()`` across the spans of a batch."""

    def attrs(a: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v if k in SKIP_KEYS else _blank(v) for k, v in a.items()}

    memo = {} if resources is None else resources
    resource = memo.get(id(span.resource))
    if resource is None:
        resource = memo[id(span.resource)] = replace(
            span.resource, attributes=attrs(span.resource.attributes)
        )
    return make_span(
        trace_id=span.trace_id,
        span_id=span.span_id,
        parent_span_id=span.parent_span_id,
        resource=resource,
        name=UNSCANNED,
        kind=span.kind,
        start_ns=span.start_ns,
        end_ns=span.end_ns,
        status_code=span.status_code,
        status_message=UNSCANNED if span.status_message else "",
        attributes=attrs(span.attributes),
        events=tuple(SpanEvent(ev.name, ev.time_ns, attrs(ev.attributes)) for ev in span.events),
        links=tuple(replace(ln, attributes=attrs(ln.attributes)) for ln in span.links),
        source=span.source,
        scope_name=span.scope_name,
    )


def redact_span(span: Span, detections: Sequence[Any], actions: Mapping[str, str] | None = None) -> Span:
    """A copy of ``span`` with every detected value replaced (see the module docstring).

    ``detections`` are :class:`~enrichers.sensitive.enricher.Detection` objects (or
    anything with ``type``, ``where``, ``start``, ``end``, ``masked``, ``hash``,
    ``index``); ``actions`` maps a type to ``mask``, ``hash`` or ``drop``.
    """
    if not detections:
        return span
    acts = actions or {}
    span_attrs: dict[str, list[Any]] = {}
    res_attrs: dict[str, list[Any]] = {}
    ev_attrs: dict[int, dict[str, list[Any]]] = {}
    name_dets: list[Any] = []
    status_dets: list[Any] = []
    for d in detections:
        w = d.where
        if w.startswith("resource:"):
            res_attrs.setdefault(w[9:], []).append(d)
        elif w.startswith("event["):
            idx_s, _, key = w[6:].partition("]:")
            ev_attrs.setdefault(int(idx_s), {}).setdefault(key, []).append(d)
        elif w == "span.name":
            name_dets.append(d)
        elif w == "status.message":
            status_dets.append(d)
        else:
            span_attrs.setdefault(w, []).append(d)
    attrs = _redact_attrs(span.attributes, span_attrs, acts) if span_attrs else span.attributes
    resource = span.resource
    if res_attrs:
        resource = replace(resource, attributes=_redact_attrs(resource.attributes, res_attrs, acts))
    events = span.events
    if ev_attrs:
        evs = list(events)
        for i, by_key in ev_attrs.items():
            if 0 <= i < len(evs):
                ev = evs[i]
                evs[i] = SpanEvent(ev.name, ev.time_ns, _redact_attrs(ev.attributes, by_key, acts))
        events = tuple(evs)
    name = span.name
    if name_dets:
        name = _replace_in(name, name_dets, {k: ("hash" if v == "drop" else v) for k, v in acts.items()}) or ""
    status_message = span.status_message
    if status_dets:
        status_message = _replace_in(status_message, status_dets, acts) or ""
    return make_span(
        trace_id=span.trace_id,
        span_id=span.span_id,
        parent_span_id=span.parent_span_id,
        resource=resource if isinstance(resource, Resource) else span.resource,
        name=name,
        kind=span.kind,
        start_ns=span.start_ns,
        end_ns=span.end_ns,
        status_code=span.status_code,
        status_message=status_message,
        attributes=attrs,
        events=events,
        links=span.links,
        source=span.source,
        scope_name=span.scope_name,
    )
