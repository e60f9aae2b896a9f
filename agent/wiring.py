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

#: (name, "module:Class"), in processing order. ``Config.enrichers`` selects by name.
ENRICHERS: list[tuple[str, str]] = [
    ("service_counts", "enrichers.service_counts:ServiceCountsEnricher"),
    ("sensitive", "enrichers.sensitive.enricher:SensitiveDataEnricher"),
    ("inventory", "enrichers.inventory:InventoryEnricher"),
    ("callgraph", "enrichers.callgraph:CallGraphEnricher"),
    ("zerotrust", "enrichers.zerotrust:ZeroTrustEnricher"),
    ("abuse", "enrichers.abuse:AbuseEnricher"),
    ("traces", "enrichers.traces:TraceStoreEnricher"),
]
ENRICHER_NAMES = tuple(n for n, _ in ENRICHERS)
#: Enrichers that always run: the stats and the service list depend on them.
REQUIRED = ("service_counts",)


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
    """The enrichers to run: ``only`` (names), else ``config.enrichers``, else all."""
    wanted = only if only is not None else (config.enrichers or None)
    out: list[Enricher] = []
    for name, spec in ENRICHERS:
        if wanted is not None and name not in wanted and name not in REQUIRED:
            continue
        klass = _load(spec)
        if klass is None:
            continue
        try:
            out.append(klass(config))  # type: ignore[call-arg]
        except TypeError:
            out.append(klass())
    return out
