"""Which enrichers run, in which order. The one list to edit to add an analysis.

Order matters: earlier enrichers publish per-batch facts in ``state.batch`` for
later ones (sensitive detections, then endpoints, then calls).
"""

from __future__ import annotations

import importlib
import logging

from agent.config import Config
from enrichers.base import Enricher

log = logging.getLogger("apiward.wiring")

ENRICHERS: list[str] = [
    "enrichers.service_counts:ServiceCountsEnricher",
    "enrichers.sensitive.enricher:SensitiveDataEnricher",
    "enrichers.inventory:InventoryEnricher",
    "enrichers.callgraph:CallGraphEnricher",
    "enrichers.zerotrust:ZeroTrustEnricher",
    "enrichers.abuse:AbuseEnricher",
    "enrichers.traces:TraceStoreEnricher",
]


def _load(spec: str) -> type[Enricher] | None:
    module, _, cls = spec.partition(":")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        # Only a missing module of our own is tolerated (a feature not built in);
        # a missing third-party dependency is a real error.
        if exc.name and module.startswith(exc.name):
            log.debug("enricher %s not available", spec)
            return None
        raise
    return getattr(mod, cls, None)


def build_enrichers(config: Config, only: list[str] | None = None) -> list[Enricher]:
    out: list[Enricher] = []
    for spec in ENRICHERS:
        if only is not None and spec not in only:
            continue
        klass = _load(spec)
        if klass is None:
            continue
        try:
            out.append(klass(config))  # type: ignore[call-arg]
        except TypeError:
            out.append(klass())
    return out
