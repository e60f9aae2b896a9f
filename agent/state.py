"""What the agent has learned, in memory, and its crash-safe persistence.

:class:`State` holds the findings store and one *part* per enricher (the call
graph, the inventory, baselines, ...). Each enricher owns its part; other code
reads it only through State. A part that wants to survive a restart implements
:class:`StatePart` (``snapshot()`` returns JSON-able data, ``restore()`` takes it
back). :class:`StateStore` writes snapshots to SQLite in WAL mode from a writer
thread, so the analysis loop never waits on the disk.

Locking: the analysis loop holds ``state.lock`` while it processes a batch;
readers on other threads (query API, exporters) take it for the short time it
takes to copy what they need.
"""

from __future__ import annotations

import logging
import os
import queue
import secrets
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import orjson

from agent.model import Finding, Severity, Subject, ns_to_iso

log = logging.getLogger("apiward.state")

SCHEMA_VERSION = 1
MAX_TRACE_IDS = 10

#: Rules that see one problem from two sides: for incidents their findings count as
#: findings of one rule (the family named here). Every other rule is its own family.
RELATED_RULES: dict[str, str] = {
    "abuse.client_rate_spike": "abuse.client_rate",
    "abuse.rate_limit_missing": "abuse.client_rate",
    "abuse.credential_stuffing": "abuse.client_rate",
}
#: (family, trace id) keys the incident index keeps; the oldest leaves first
MAX_INCIDENT_INDEX = 100_000
#: findings remembered per (family, trace id): one per hop of a call chain is plenty
MAX_FINDINGS_PER_TRACE = 4


@runtime_checkable
class StatePart(Protocol):
    """A piece of State owned by one enricher that survives restarts."""

    def snapshot(self) -> Any:
        """JSON-serialisable copy of what must survive. Called under state.lock."""

    def restore(self, data: Any) -> None:
        """Take back what :meth:`snapshot` produced (possibly by an older run)."""


@dataclass(slots=True)
class FindingRecord:
    """The merged, mutable form of a finding inside the store."""

    finding: Finding
    seq: int = 0
    acknowledged: bool = False
    muted: bool = False
    opened_seq: int = 0
    history: list[tuple[int, int]] = field(default_factory=list)  # (ts_ns, count) samples
    incident: str = ""  # id of the incident the finding belongs to (see FindingStore)

    @property
    def id(self) -> str:
        return self.finding.id

    def to_dict(self) -> dict[str, Any]:
        f = self.finding
        return {
            "id": f.id,
            "rule": f.rule,
            "severity": f.severity.label,
            "owasp": f.owasp,
            "title": f.title,
            "subject": f.subject.as_dict(),
            "subject_label": f.subject.label,
            "count": f.count,
            "first_seen": ns_to_iso(f.first_seen_ns),
            "last_seen": ns_to_iso(f.last_seen_ns),
            "first_seen_ns": f.first_seen_ns,
            "last_seen_ns": f.last_seen_ns,
            "trace_ids": list(f.trace_ids),
            "span_ids": list(f.span_ids),
            "confidence": round(f.confidence, 3),
            "category": f.category,
            "compliance": list(f.compliance),
            "explanation": f.explanation,
            "remediation": f.remediation,
            "evidence": dict(f.evidence),
            "acknowledged": self.acknowledged,
            "muted": self.muted,
            "incident": self.incident or f.id,
        }


def incident_order(r: FindingRecord) -> tuple[int, int, str]:
    """Sort key of an incident's findings: the root (earliest first seen; the entry hop
    starts first) comes first; ties go to the most severe, then to the id."""
    return (r.finding.first_seen_ns, -int(r.finding.severity), r.id)


def caller_identity(subject: Subject) -> str:
    """The client a finding is about, which keeps incidents apart. On an edge (a subject
    with a ``server``) ``client`` names the calling hop, which differs at every hop of one
    request by construction, so it is not an identity there."""
    return "" if subject.server else subject.client


@dataclass(slots=True)
class _Incident:
    members: set[str]
    client: str = ""  # the caller identity of its findings; "" when none has one


def finding_from_dict(d: dict[str, Any]) -> Finding:
    subj = d.get("subject") or {}
    return Finding(
        rule=d["rule"],
        title=d.get("title", ""),
        severity=Severity.parse(d.get("severity", "info")),
        subject=Subject(**{k: str(v) for k, v in subj.items() if k in Subject.__slots__}),  # type: ignore[attr-defined]
        first_seen_ns=int(d.get("first_seen_ns", 0)),
        last_seen_ns=int(d.get("last_seen_ns", 0)),
        count=int(d.get("count", 1)),
        owasp=d.get("owasp"),
        confidence=float(d.get("confidence", 1.0)),
        explanation=d.get("explanation", ""),
        remediation=d.get("remediation", ""),
        evidence=d.get("evidence") or {},
        trace_ids=tuple(d.get("trace_ids") or ()),
        span_ids=tuple(d.get("span_ids") or ()),
        compliance=tuple(d.get("compliance") or ()),
        category=d.get("category", ""),
    )


class FindingStore:
    """Findings merged by id (rule + subject): one finding per problem, with a count.

    ``add`` reports whether the finding is new or changed in a way worth
    exporting (count, severity); every change bumps a sequence number so
    exporters and live views can ask "what changed since N".

    Findings are also correlated into *incidents*: one request seen at several hops
    of a call chain raises one finding per hop, and these share evidence trace ids.
    Findings of one rule family (:data:`RELATED_RULES`) that share a trace id join one
    incident, unless their caller identities (:func:`caller_identity`) differ. The
    index from (family, trace id) to finding ids is bounded (oldest trace first), so
    correlation costs O(trace ids of the observation) per ``add``. An incident's id is
    the id of the first finding it had; when two incidents meet, the smaller joins the
    larger (its findings are relabelled, so each finding moves at most log2(n) times).
    Incident ids are stored with the findings and survive restarts.
    """

    def __init__(self, max_findings: int = 20_000) -> None:
        self._records: dict[str, FindingRecord] = {}
        self._seq = 0
        self.max_findings = max_findings
        self.history_max_age_ns = 7 * 86_400 * 1_000_000_000  # finding history kept for 7 days
        self.listeners: list[Callable[[FindingRecord, bool], None]] = []
        self.evicted = 0
        self._incidents: dict[str, _Incident] = {}
        self._by_trace: OrderedDict[tuple[str, str], list[str]] = OrderedDict()
        self.max_incident_index = MAX_INCIDENT_INDEX

    def __len__(self) -> int:
        return len(self._records)

    @property
    def seq(self) -> int:
        return self._seq

    def add(self, obs: Finding) -> FindingRecord:
        fid = obs.id  # a hash, computed on every access: once here
        rec = self._records.get(fid)
        self._seq += 1
        if rec is None:
            rec = FindingRecord(finding=obs, seq=self._seq, opened_seq=self._seq, incident=fid)
            rec.history.append((obs.last_seen_ns, obs.count))
            self._records[fid] = rec
            self._join(rec, fid)
            self._index(rec, fid, obs.trace_ids, merge=True)
            if len(self._records) > self.max_findings:
                self._evict()
            for cb in self.listeners:
                cb(rec, True)
            return rec
        old = rec.finding
        trace_ids = old.trace_ids
        if len(trace_ids) < MAX_TRACE_IDS:
            trace_ids = tuple(dict.fromkeys(trace_ids + obs.trace_ids))[:MAX_TRACE_IDS]
        span_ids = old.span_ids
        if len(span_ids) < MAX_TRACE_IDS:
            span_ids = tuple(dict.fromkeys(span_ids + obs.span_ids))[:MAX_TRACE_IDS]
        evidence = old.evidence
        if obs.evidence and obs.evidence != old.evidence:
            evidence = {**old.evidence, **obs.evidence}
        rec.finding = replace(
            old,
            count=old.count + obs.count,
            severity=max(old.severity, obs.severity),
            confidence=max(old.confidence, obs.confidence),
            first_seen_ns=min(old.first_seen_ns, obs.first_seen_ns),
            last_seen_ns=max(old.last_seen_ns, obs.last_seen_ns),
            trace_ids=trace_ids,
            span_ids=span_ids,
            evidence=evidence,
            explanation=obs.explanation or old.explanation,
        )
        rec.seq = self._seq
        if len(rec.history) < 256:
            rec.history.append((obs.last_seen_ns, rec.finding.count))
        else:
            rec.history[-1] = (obs.last_seen_ns, rec.finding.count)
        cutoff = rec.finding.last_seen_ns - self.history_max_age_ns
        if rec.history[0][0] < cutoff:  # age cap: drop samples older than the window
            rec.history = [h for h in rec.history if h[0] >= cutoff] or rec.history[-1:]
        # the observation's own trace ids, also those the finding no longer keeps
        self._index(rec, fid, obs.trace_ids, merge=True)
        for cb in self.listeners:
            cb(rec, False)
        return rec

    def _evict(self) -> None:
        # Drop the least severe, longest-idle tenth; counted, never silent.
        ranked = sorted(
            self._records.values(),
            key=lambda r: (r.finding.severity, r.finding.last_seen_ns),
        )
        for r in ranked[: max(1, len(ranked) // 10)]:
            del self._records[r.id]
            self.evicted += 1
            inc = self._incidents.get(r.incident)
            if inc is not None:
                inc.members.discard(r.id)
                if not inc.members:
                    del self._incidents[r.incident]
        # index entries naming evicted findings are skipped when met and age out

    # ------------------------------------------------------------ incidents
    def _join(self, rec: FindingRecord, fid: str) -> None:
        """Put ``rec`` (id ``fid``) in the incident its ``incident`` field names (made if new)."""
        ident = caller_identity(rec.finding.subject)
        inc = self._incidents.get(rec.incident)
        if inc is not None and inc.client and ident and inc.client != ident:
            rec.incident = fid  # stored data that contradicts itself: stand alone
            inc = self._incidents.get(fid)
        if inc is None:
            inc = self._incidents[rec.incident] = _Incident(set())
        inc.members.add(fid)
        inc.client = inc.client or ident

    def _index(self, rec: FindingRecord, fid: str, trace_ids: Iterable[str], *, merge: bool) -> None:
        """Record ``rec`` (id ``fid``) under its (family, trace id) keys and, with ``merge``,
        join the incidents of the findings already recorded there."""
        family = RELATED_RULES.get(rec.finding.rule, rec.finding.rule)
        index = self._by_trace
        for t in trace_ids:
            key = (family, t)
            ids = index.get(key)
            if ids is None:
                index[key] = [fid]
                if len(index) > self.max_incident_index:
                    index.popitem(last=False)
                continue
            if merge:
                for other_id in ids:
                    other = self._records.get(other_id)
                    if other is not None and other.incident != rec.incident:
                        self._merge(other.incident, rec.incident)
            if fid not in ids:
                ids.append(fid)
                if len(ids) > MAX_FINDINGS_PER_TRACE:
                    del ids[0]

    def _merge(self, a: str, b: str) -> None:
        """One incident of ``a`` and ``b`` (``a``'s id on a tie), unless their callers differ."""
        ia, ib = self._incidents[a], self._incidents[b]
        if ia.client and ib.client and ia.client != ib.client:
            return
        if len(ib.members) > len(ia.members):
            a, b, ia, ib = b, a, ib, ia
        self._seq += 1  # relabelled findings count as changed (persisted, streamed)
        for fid in ib.members:
            r = self._records[fid]
            r.incident = a
            r.seq = self._seq
        ia.members |= ib.members
        ia.client = ia.client or ib.client
        del self._incidents[b]

    def incidents(self) -> list[list[FindingRecord]]:
        """Every incident's findings, its root first (:func:`incident_order`)."""
        return [
            sorted((self._records[fid] for fid in inc.members), key=incident_order)
            for inc in self._incidents.values()
        ]

    def incident_of(self, fid: str) -> list[FindingRecord]:
        """The findings of the incident of finding ``fid``, root first; [] if unknown."""
        rec = self._records.get(fid)
        inc = self._incidents.get(rec.incident) if rec is not None else None
        if inc is None:
            return []
        return sorted((self._records[m] for m in inc.members), key=incident_order)

    def get(self, fid: str) -> FindingRecord | None:
        return self._records.get(fid)

    def records(self) -> list[FindingRecord]:
        return list(self._records.values())

    def changed_since(self, seq: int) -> list[FindingRecord]:
        return [r for r in self._records.values() if r.seq > seq]

    def set_flags(self, fid: str, *, acknowledged: bool | None = None, muted: bool | None = None) -> bool:
        rec = self._records.get(fid)
        if rec is None:
            return False
        if acknowledged is not None:
            rec.acknowledged = acknowledged
        if muted is not None:
            rec.muted = muted
        self._seq += 1
        rec.seq = self._seq
        return True

    def restore_record(self, d: dict[str, Any]) -> None:
        f = finding_from_dict(d)
        fid = f.id
        self._seq += 1
        rec = FindingRecord(
            finding=f,
            seq=self._seq,
            opened_seq=self._seq,
            acknowledged=bool(d.get("acknowledged")),
            muted=bool(d.get("muted")),
            incident=str(d.get("incident") or fid),
        )
        old = self._records.get(fid)
        if old is not None:  # the same finding twice: keep one membership
            inc = self._incidents.get(old.incident)
            if inc is not None:
                inc.members.discard(fid)
                if not inc.members:
                    del self._incidents[old.incident]
        self._records[fid] = rec
        self._join(rec, fid)
        # index only: the stored incident ids stand as they were, so a restart regroups nothing
        self._index(rec, fid, f.trace_ids, merge=False)


@dataclass(slots=True)
class BatchScratch:
    """Per-batch facts one enricher publishes for the enrichers after it.

    Cleared by the pipeline before every batch. Order of the enrichers:
    sensitive data, inventory, call graph, zero trust, abuse/OWASP.
    """

    #: span_id -> Endpoint, set by the inventory enricher.
    endpoints: dict[str, Any] = field(default_factory=dict)
    #: calls over graph edges, set by the call-graph enricher (agent.model.Call).
    calls: list[Any] = field(default_factory=list)
    #: span_id -> list of detections (type, where, direction, masked, hash), set by
    #: the sensitive-data enricher. Never raw values.
    sensitive: dict[str, list[Any]] = field(default_factory=dict)

    def clear(self) -> None:
        self.endpoints.clear()
        self.calls.clear()
        self.sensitive.clear()


class State:
    """Everything the agent knows. See the module docstring for the locking rule."""

    def __init__(self, state_dir: str | Path | None = None) -> None:
        self.batch = BatchScratch()
        self.lock = threading.RLock()
        self.findings = FindingStore()
        self.parts: dict[str, Any] = {}
        self.services: dict[str, int] = {}
        self.state_dir = Path(state_dir) if state_dir else None
        self._secret: bytes | None = None

    def part(self, name: str, factory: Callable[[], Any]) -> Any:
        """The part called ``name``, created by ``factory`` on first use."""
        p = self.parts.get(name)
        if p is None:
            p = factory()
            self.parts[name] = p
            pending = getattr(self, "_pending_restore", {}).pop(name, None)
            if pending is not None and isinstance(p, StatePart):
                try:
                    p.restore(pending)
                except Exception:  # noqa: BLE001 - old or foreign data must not stop the agent
                    log.warning("state part %s could not be restored; starting it afresh", name)
        return p

    @property
    def secret(self) -> bytes:
        """Per-install key for keyed hashes of sensitive values (kept in the state dir)."""
        if self._secret is None:
            self._secret = load_or_create_secret(self.state_dir)
        return self._secret

    def add_findings(self, findings: Iterable[Finding]) -> int:
        n = 0
        for f in findings:
            self.findings.add(f)
            n += 1
        return n


def load_or_create_secret(state_dir: Path | None) -> bytes:
    if state_dir is None:
        return secrets.token_bytes(32)
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "secret.key"
    try:
        data = path.read_bytes()
        if len(data) >= 32:
            return data[:32]
    except FileNotFoundError:
        pass
    key = secrets.token_bytes(32)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return key


class StateStore:
    """SQLite persistence of State (WAL mode, schema-versioned, batched writes).

    ``capture(state)`` takes a snapshot under the state lock (cheap: in-memory
    copies) and hands it to a writer thread that commits it in one transaction.
    A crash at any point leaves the last committed snapshot intact.
    """

    def __init__(self, state_dir: str | Path) -> None:
        self.dir = Path(state_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "state.db"
        self._db = self._open()
        self._queue: queue.Queue[tuple[dict[str, bytes], list[tuple[str, bytes]]] | None] = (
            queue.Queue(maxsize=4)
        )
        self._finding_seq = 0
        self.flushes = 0
        self.flush_errors = 0
        self.last_flush_ns = 0
        self._thread: threading.Thread | None = None
        self._done = threading.Event()

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        db.execute("CREATE TABLE IF NOT EXISTS parts (name TEXT PRIMARY KEY, data BLOB)")
        db.execute("CREATE TABLE IF NOT EXISTS findings (id TEXT PRIMARY KEY, data BLOB)")
        row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:
            db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) > SCHEMA_VERSION:
            raise RuntimeError(
                f"{self.path}: state schema version {row[0]} is newer than this apiward "
                f"({SCHEMA_VERSION}); use a newer apiward or another --state-dir"
            )
        return db

    def load(self, state: State) -> None:
        """Reload findings and parts; parts not yet created are restored on creation."""
        pending: dict[str, Any] = {}
        for name, data in self._db.execute("SELECT name, data FROM parts"):
            try:
                pending[name] = orjson.loads(data)
            except orjson.JSONDecodeError:
                log.warning("%s: part %s is unreadable; starting it afresh", self.path, name)
        with state.lock:
            for name, data in list(pending.items()):
                if name == "__services__":
                    state.services.update({str(k): int(v) for k, v in data.items()})
                    pending.pop(name)
                    continue
                p = state.parts.get(name)
                if p is not None and isinstance(p, StatePart):
                    p.restore(data)
                    pending.pop(name)
            state._pending_restore = pending  # type: ignore[attr-defined]
            for (data,) in self._db.execute("SELECT data FROM findings"):
                try:
                    state.findings.restore_record(orjson.loads(data))
                except Exception:  # noqa: BLE001
                    log.warning("%s: a stored finding is unreadable; skipped", self.path)
            self._finding_seq = state.findings.seq

    def capture(self, state: State) -> bool:
        """Snapshot State (call with or without the lock held) and queue the write."""
        with state.lock:
            parts: dict[str, bytes] = {}
            for name, p in state.parts.items():
                if isinstance(p, StatePart):
                    parts[name] = orjson.dumps(p.snapshot(), option=orjson.OPT_NON_STR_KEYS)
            parts["__services__"] = orjson.dumps(state.services)
            changed = state.findings.changed_since(self._finding_seq)
            rows = [(r.id, orjson.dumps(r.to_dict())) for r in changed]
            self._finding_seq = state.findings.seq
        try:
            self._queue.put_nowait((parts, rows))
        except queue.Full:
            return False
        self._ensure_thread()
        return True

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._writer, name="apiward-state", daemon=True)
            self._thread.start()

    def _writer(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                self._done.set()
                return
            self._write(*item)

    def _write(self, parts: dict[str, bytes], rows: list[tuple[str, bytes]]) -> None:
        try:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR REPLACE INTO parts (name, data) VALUES (?, ?)", list(parts.items())
            )
            if rows:
                self._db.executemany("INSERT OR REPLACE INTO findings (id, data) VALUES (?, ?)", rows)
            self._db.execute("COMMIT")
            self.flushes += 1
            self.last_flush_ns = time.time_ns()
        except sqlite3.Error as exc:
            self.flush_errors += 1
            log.error("state flush to %s failed: %s", self.path, exc)
            try:
                self._db.execute("ROLLBACK")
            except sqlite3.Error:
                pass

    def flush_now(self, state: State) -> None:
        """Synchronous capture and write (used at shutdown and by tests)."""
        self.close_writer()
        with state.lock:
            parts = {
                n: orjson.dumps(p.snapshot(), option=orjson.OPT_NON_STR_KEYS)
                for n, p in state.parts.items()
                if isinstance(p, StatePart)
            }
            parts["__services__"] = orjson.dumps(state.services)
            rows = [(r.id, orjson.dumps(r.to_dict())) for r in state.findings.changed_since(self._finding_seq)]
            self._finding_seq = state.findings.seq
        self._write(parts, rows)

    def close_writer(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._done.wait(timeout=30)
            self._thread = None
            self._done.clear()

    def close(self) -> None:
        self.close_writer()
        self._db.close()
