"""Replacing detected values in a span, for the redacting forwarder.

:func:`redact_span` takes a span and the detections the enricher published for it
(``state.batch.sensitive[span_id]``) and returns a copy whose attribute values have
each detected substring replaced in place: by its masked form (``mask``, the
default), by ``[TYPE:hash]`` (``hash``), or with the whole attribute removed
(``drop``). The action is chosen per type.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from agent.model import Resource, Span, SpanEvent, make_span

ACTIONS = ("mask", "hash", "drop")
DEFAULT_ACTION = "mask"


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


def _redact_attrs(
    attrs: Mapping[str, Any], by_key: Mapping[str, list[Any]], actions: Mapping[str, str]
) -> dict[str, Any]:
    out = dict(attrs)
    for key, dets in by_key.items():
        v = out.get(key)
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
                if 0 <= i < len(items) and isinstance(items[i], str):
                    new = _replace_in(items[i], ds, actions)
                    if new is None:
                        dropped = True
                        break
                    items[i] = new
            if dropped:
                del out[key]
            else:
                out[key] = items
    return out


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
