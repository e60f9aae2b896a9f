"""The call graph: edges between services, functions, databases, queues and peers.

``CallGraphEnricher`` is the enricher; its State part is ``"callgraph"``. The
node-id scheme is documented in :mod:`enrichers.callgraph.nodes`.
"""

from __future__ import annotations

from enrichers.callgraph.enricher import CallGraphEnricher, CallGraphPart, EdgeStats

__all__ = ["CallGraphEnricher", "CallGraphPart", "EdgeStats"]
