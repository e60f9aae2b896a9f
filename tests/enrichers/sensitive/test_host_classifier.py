"""Which hosts the sensitive-data enricher treats as external (``sensitive.external_transfer``)."""

from __future__ import annotations

from agent.config import DEFAULT_INTERNAL_CIDRS, DEFAULT_INTERNAL_DOMAINS
from enrichers.sensitive.enricher import HostClassifier


def test_default_networks_keep_private_addresses_internal() -> None:
    hosts = HostClassifier(DEFAULT_INTERNAL_DOMAINS, DEFAULT_INTERNAL_CIDRS)
    assert not hosts.is_external("10.1.2.3")
    assert not hosts.is_external("127.0.0.2")
    assert not hosts.is_external("users.svc.cluster.local")
    assert hosts.is_external("93.184.216.34")
    assert hosts.is_external("api.stripe.com")


def test_configured_networks_decide_like_the_call_graph() -> None:
    # Only 127.0.0.1 is inside (the demo's set-up): another loopback address is external,
    # as the call graph classifies it, although it is not globally routable.
    hosts = HostClassifier([], ["127.0.0.1/32"])
    assert hosts.is_external("127.0.0.2")
    assert not hosts.is_external("127.0.0.1")
    assert not hosts.is_external("0.0.0.0")


def test_without_networks_only_global_addresses_are_external() -> None:
    hosts = HostClassifier(["corp.example"], [])
    assert not hosts.is_external("192.168.1.1")
    assert hosts.is_external("8.8.8.8")
