"""Spans with the detected values taken out of what later analyses keep.

The inventory keeps route templates, the call graph keeps endpoints and queue
names, the trace store keeps span names, and findings name all of them. They
are built from a span's path, URL, span name and messaging destination, so a
value found there (``/v1/lookup/+442079460958``, ``notify jane@example.org``,
topic ``orders-bob@example.org``) would be stored, served and exported as it
was. (Network addresses are left: they name uninstrumented peers in the graph.)
The sensitive stage runs first; for the few spans with a detection in one
of those places it hands the later analyses a copy in which each detected value
is replaced by a placeholder naming its type (``{phone_number}``), the
normalised views rebuilt from the changed attributes. The original span is left
as it is: the redacting forwarder works on it, by the detections' offsets.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from agent.model import Span, build_span
from enrichers.sensitive.recognizer import NETWORK

if TYPE_CHECKING:
    from enrichers.sensitive.enricher import Detection

#: Attribute keys whose values become paths, routes, node or endpoint names, with
#: ``span.name``: a detection there is replaced in the copy the analyses see.
STRUCTURAL_KEYS = frozenset(
    {"url.full", "http.url", "http.target", "url.path", "url.query", "http.route",
     "messaging.destination.name", "messaging.destination", "messaging.destination.template",
     "messaging.source.name", "span.name"}
)  # fmt: skip


def placeholder(entity: str) -> str:
    """``{credit_card}`` for ``CREDIT_CARD``: reads as a path parameter in OpenAPI syntax."""
    return "{" + entity.lower() + "}"


def replace_values(text: str, dets: Sequence[Detection], by: Callable[[Detection], str] | None = None) -> str:
    """``text`` with each detected value (offsets in ``text``; list elements are not)
    replaced by ``by(detection)``, by default its type's :func:`placeholder`."""
    # right to left, so earlier offsets stay valid; overlapping detections are skipped
    end = len(text) + 1
    for d in sorted((d for d in dets if d.index < 0), key=lambda d: -d.start):
        if 0 <= d.start < d.end <= min(end, len(text)):
            text = text[: d.start] + (placeholder(d.type) if by is None else by(d)) + text[d.end :]
            end = d.start
    return text


def sanitized(span: Span, dets: Sequence[Detection]) -> Span | None:
    """A copy of ``span`` without the values detected in its structural strings, or
    ``None`` when none of ``dets`` is in one (the common case: no copy)."""
    hits: dict[str, list[Detection]] = {}
    for d in dets:
        # Addresses stay: they are how the call graph names an uninstrumented peer.
        if d.index < 0 and d.where in STRUCTURAL_KEYS and d.category != NETWORK:
            hits.setdefault(d.where, []).append(d)
    if not hits:
        return None
    attrs = dict(span.attributes)
    name = span.name
    for where, ds in hits.items():
        if where == "span.name":
            name = replace_values(name, ds)
            continue
        value = attrs.get(where)
        if type(value) is str:
            attrs[where] = replace_values(value, ds)
    return build_span(
        span.trace_id, span.span_id, span.parent_span_id, span.resource, name, span.kind,
        span.start_ns, span.end_ns, span.status_code, span.status_message, attrs, span.events,
        span.links, span.source, span.scope_name,
    )
