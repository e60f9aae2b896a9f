"""The first enricher: spans per service, so the whole path is exercised."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from agent.model import Finding, Span
from enrichers.base import Enricher

if TYPE_CHECKING:
    from agent.state import State


class ServiceCountsEnricher(Enricher):
    """Counts spans per ``service.name`` into ``state.services``."""

    name = "service_counts"

    def process(self, batch: Sequence[Span], state: State) -> Iterable[Finding]:
        services = state.services
        last = None
        run = 0
        # Spans of one resource arrive together: count runs, not single spans.
        for span in batch:
            res = span.resource
            if res is last:
                run += 1
                continue
            if last is not None:
                services[last.service_name] = services.get(last.service_name, 0) + run
            last = res
            run = 1
        if last is not None:
            services[last.service_name] = services.get(last.service_name, 0) + run
        return ()
