"""The enricher contract.

An enricher reads batches of :class:`~agent.model.Span` and returns findings.
It is pure with respect to its inputs except for the part of State it owns
(``state.part(NAME, factory)``). It runs on the analysis loop with
``state.lock`` held, so it must be quick per batch and must not block on I/O.
An exception it raises is caught, counted and logged by the pipeline, and the
next batch goes on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from agent.model import Finding, Span

if TYPE_CHECKING:
    from agent.state import State


class Enricher:
    """Base class: override :meth:`process`; :meth:`tick` is optional."""

    #: Short unique name, used in metrics and as the State part name.
    name: str = "enricher"

    def process(self, batch: Sequence[Span], state: State) -> Iterable[Finding]:
        raise NotImplementedError

    def tick(self, now_ns: int, state: State) -> Iterable[Finding]:
        """Called about once a second with the lock held (expiry, windows)."""
        return ()
