"""Zero trust: every observed flow checked against a policy; learn and check.

``ZeroTrustEnricher`` runs in the pipeline after the call graph; ``policy``
loads and validates ``apiward-policy.yaml``; ``learner`` writes a least-privilege
policy from what was observed. See ``docs/policy.md``.
"""

from __future__ import annotations

from enrichers.zerotrust.enricher import ZeroTrustEnricher
from enrichers.zerotrust.policy import Policy, PolicyError, load_policy
from enrichers.zerotrust.state import ZeroTrustState

__all__ = ["Policy", "PolicyError", "ZeroTrustEnricher", "ZeroTrustState", "load_policy"]
