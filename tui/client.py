"""The TUI's client of the apiward query API.

Plain stdlib HTTP so it can run on a worker thread and be tested without
Textual. Every failure is turned into one :class:`ApiError` subclass whose
message is a sentence a user can act on: the UI shows it as a banner and the
``apiward tui --connect`` command prints it and exits, never a traceback.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

API = "/api/v1"


class ApiError(Exception):
    """The query API could not answer; ``str(err)`` is the user-facing sentence."""


class Unreachable(ApiError):
    """No connection (refused, reset, timed out, name not resolved): retry later."""


class Unauthorized(ApiError):
    """The agent refused the token (HTTP 401/403): retrying will not help."""


class NotAnAgent(ApiError):
    """Something answered, but not with the apiward query API."""


class NotFound(ApiError):
    """The API answered 404 for one object (a finding or trace that is gone)."""


def normalise_url(url: str) -> str:
    """``host:port`` or ``http://host:port/`` -> ``http://host:port``."""
    url = url.strip()
    if not url:
        raise ApiError("The agent URL is empty: pass one like --connect http://127.0.0.1:4320.")
    if "://" not in url:
        url = "http://" + url
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ApiError(
            f"'{url}' is not an agent URL: pass one like --connect http://127.0.0.1:4320."
        )
    return url.rstrip("/")


class ApiClient:
    """Blocking JSON client of one agent's query API. Thread-safe (no shared state)."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 5.0) -> None:
        self.base_url = normalise_url(base_url)
        self.token = token or None
        self.timeout = timeout

    # ------------------------------------------------------------------ plumbing

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        url = self.base_url + path
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as err:
            if err.code in (401, 403):
                hint = "pass the right one with --token" if self.token else "pass it with --token"
                raise Unauthorized(
                    f"The agent at {self.base_url} refused the API token (HTTP {err.code}): "
                    f"{hint}."
                ) from None
            if err.code == 404:
                raise NotFound(f"{path} was not found on the agent at {self.base_url}.") from None
            raise ApiError(
                f"The agent at {self.base_url} answered HTTP {err.code} to {method} {path}."
            ) from None
        except (TimeoutError, urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise Unreachable(
                f"Cannot reach the agent at {self.base_url} ({reason}): is it running and "
                "is the URL right?"
            ) from None
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise NotAnAgent(
                f"{self.base_url}{path} did not answer JSON: is this the agent's query API "
                "port (default 4320)?"
            ) from None

    def get(self, path: str, **params: str) -> Any:
        query = {k: v for k, v in params.items() if v}
        if query:
            path = f"{path}?{urllib.parse.urlencode(query)}"
        return self._request("GET", path)

    # ------------------------------------------------------------------ routes

    def check(self) -> dict[str, Any]:
        """Fetch stats once, turning a 404 into "this is not an apiward agent"."""
        try:
            stats = self.stats()
        except NotFound:
            raise NotAnAgent(
                f"{self.base_url} has no {API}/stats: is this the agent's query API port "
                "(default 4320)?"
            ) from None
        return stats

    def stats(self) -> dict[str, Any]:
        return _as_dict(self.get(f"{API}/stats"))

    def graph(self) -> dict[str, Any]:
        return _as_dict(self.get(f"{API}/graph"))

    def inventory(self) -> list[dict[str, Any]]:
        return _as_list(self.get(f"{API}/inventory"))

    def endpoint(self, service: str, method: str, route: str) -> dict[str, Any]:
        return _as_dict(self.get(f"{API}/endpoint", service=service, method=method, route=route))

    def findings(self, group: str = "") -> list[dict[str, Any]]:
        """Every finding; with ``group="incident"`` one row per incident (its root, with
        ``hops``)."""
        return _as_list(self.get(f"{API}/findings", group=group))

    def finding(self, fid: str) -> dict[str, Any]:
        return _as_dict(self.get(f"{API}/findings/{urllib.parse.quote(fid, safe='')}"))

    def traces(self, **params: str) -> list[dict[str, Any]]:
        return _as_list(self.get(f"{API}/traces", **params))

    def trace(self, trace_id: str) -> dict[str, Any]:
        return _as_dict(self.get(f"{API}/traces/{urllib.parse.quote(trace_id, safe='')}"))

    def set_flag(self, fid: str, flag: str, value: bool) -> Any:
        """POST ``ack`` or ``mute`` for a finding; kept in the agent's state."""
        if flag not in ("ack", "mute"):
            raise ValueError(f"unknown finding flag {flag!r}")
        path = f"{API}/findings/{urllib.parse.quote(fid, safe='')}/{flag}"
        return self._request("POST", path, {"value": bool(value)})


def _as_dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _as_list(v: Any) -> list[dict[str, Any]]:
    """Accept a bare list or a ``{"items": [...]}``-style envelope."""
    if isinstance(v, dict):
        for key in ("items", "findings", "endpoints", "traces", "inventory", "data"):
            if isinstance(v.get(key), list):
                v = v[key]
                break
    if not isinstance(v, list):
        return []
    return [x for x in v if isinstance(x, dict)]
