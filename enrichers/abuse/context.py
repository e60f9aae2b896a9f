"""The facts of one request that the per-span detections share, computed once."""

from __future__ import annotations

from dataclasses import dataclass

from agent.model import HttpView, Span, Subject
from enrichers.abuse.identity import Principal
from enrichers.abuse.routes import RouteInfo


@dataclass(frozen=True, slots=True, eq=False)
class EndpointRef:
    """An endpoint key with its parts and route facts (cached per endpoint).

    One object per endpoint, so it hashes by identity: a cheap dict key and
    row value.
    """

    key: str
    service: str
    method: str
    route: str
    info: RouteInfo
    #: Set for call-graph edges (outbound calls from ``service`` to this host).
    edge_server: str = ""
    #: The key's code in the enricher's endpoint :class:`~enrichers.abuse.rows.Codebook`.
    code: int = -1

    def subject(self, client: str = "", **extra: str) -> Subject:
        if self.edge_server:
            return Subject(client=self.service, server=self.edge_server, **extra)
        return Subject(service=self.service, method=self.method, route=self.route, client=client, **extra)


@dataclass(slots=True)
class Request:
    """One observed server-side request."""

    span: Span
    http: HttpView
    ep: EndpointRef
    who: Principal
    ts: int
    status: int
    params: list[tuple[str, str]] | None = None

    @property
    def client(self) -> str:
        return self.who.client
