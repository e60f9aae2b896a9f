"""Abuse and anomaly detection: passive OWASP API Top 10 (2023) checks.

One file per detection family (``floods.py``, ``bola.py``, ``authn.py``, ...),
the rule catalogue in ``rules.py``, baselines in ``baselines.py``, and the
enricher that ties them together in ``enricher.py``.
"""

from enrichers.abuse.enricher import AbuseEnricher

__all__ = ["AbuseEnricher"]
