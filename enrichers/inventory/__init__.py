"""API inventory: endpoints, route templating, specs (shadow, zombie), lifecycle.

``InventoryEnricher`` is the enricher; its State part is ``"inventory"``.
"""

from __future__ import annotations

from enrichers.inventory.enricher import InventoryEnricher, InventoryPart

__all__ = ["InventoryEnricher", "InventoryPart"]
