"""The agent process: state, pipeline, receivers, query API and optional parts.

``Agent(config)`` builds everything; ``start()`` opens the ports; ``stop()``
stops accepting, drains what was accepted, persists State and closes. Optional
parts (eBPF, span forwarding, OTLP export) are imported only when configured.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from agent.config import Config
from agent.model import Span, SpanSink
from agent.pipeline import Pipeline, Stats
from agent.state import State, StateStore
from agent.wiring import build_enrichers

log = logging.getLogger("apiward")


class Agent:
    def __init__(self, config: Config, *, persist: bool | None = None) -> None:
        self.config = config
        self.stats = Stats()
        persist = config.persist if persist is None else persist
        self.state = State(config.state_dir if persist else None)
        self.store: StateStore | None = None
        if persist:
            self.store = StateStore(config.state_dir)
        self.enrichers = build_enrichers(config)
        for e in self.enrichers:
            report = getattr(e, "stats", None)
            if callable(report):  # an analysis with figures of its own (the trace store's sampling)
                self.stats.extra[e.name] = report
        if self.store is not None:
            self.store.load(self.state)
            self._materialise_parts()
        self.pipeline = Pipeline(
            self.state,
            self.enrichers,
            stats=self.stats,
            queue_spans=config.queue_spans,
            store=self.store,
            flush_interval=config.flush_interval,
        )
        self.sink: SpanSink = self.pipeline
        self.receivers: list[Any] = []
        self.extras: list[Any] = []
        self.api: Any = None
        self.grpc_port = 0
        self.http_port = 0
        self.api_port = 0
        self.started_ns = time.time_ns()

    # ----------------------------------------------------------------- parts
    def _materialise_parts(self) -> None:
        """Let every enricher create (and so restore) its State part before traffic.

        Parts are created on first use; an empty batch makes that happen at start,
        so a restarted agent serves its graph and inventory right away.
        """
        with self.state.lock:
            for e in self.enrichers:
                try:
                    e.process([], self.state)
                except Exception:  # noqa: BLE001 - an enricher that cannot take an empty batch
                    log.debug("enricher %s did not take an empty batch", e.name)

    def _start_optional(self) -> None:
        cfg = self.config
        if cfg.ebpf:
            from collectors.ebpf import EbpfCollector  # lazily: only eBPF mode needs bcc

            join = _joining_sink(self.pipeline)
            if join is not None:
                self.sink = join
            collector = EbpfCollector(cfg, self.sink)
            collector.start()
            self.extras.append(collector)
            if hasattr(collector, "stats"):
                self.stats.extra["ebpf"] = collector.stats
        if cfg.forward:
            from agent.forwarder import SpanForwarder

            fwd = SpanForwarder(cfg, self.state, self.stats)
            fwd.start()
            self.pipeline.on_batch.append(fwd.submit)
            self.extras.append(fwd)
        try:
            from agent.exporters import build_exporters
        except ModuleNotFoundError as exc:
            if exc.name and not "agent.exporters".startswith(exc.name):
                raise
        else:
            for exp in build_exporters(cfg, self):
                exp.start()
                self.extras.append(exp)

    def start(self, *, receivers: bool = True, api: bool = True) -> None:
        from agent.api import QueryApi

        self.pipeline.start()
        self._start_optional()
        if receivers:
            from collectors.edge import EdgeProcess, edge_wanted

            cfg = self.config
            if edge_wanted(cfg.edge_process):
                edge = EdgeProcess(
                    self.sink, self.stats, bind=cfg.bind, grpc_port=cfg.grpc_port,
                    http_port=cfg.http_port, max_message_bytes=cfg.max_message_bytes,
                    queue_spans=cfg.queue_spans, queue=self.pipeline,
                )
                edge.start()
                self.receivers.append(edge)
                self.stats.extra["edge_process"] = edge.stats_report
                self.grpc_port, self.http_port = edge.grpc_port, edge.http_port
            else:
                self._start_receivers()
        if api:
            self.api = QueryApi(self, self.config.api_bind, self.config.api_port, token=self.config.api_token)
            self.api.start()
            self.api_port = self.api.port

    def _start_receivers(self) -> None:
        """Both OTLP receivers in this process (``edge_process: off``)."""
        from collectors.otlp_grpc import OtlpGrpcReceiver
        from collectors.otlp_http import OtlpHttpReceiver

        cfg = self.config
        g = OtlpGrpcReceiver(self.sink, cfg.bind, cfg.grpc_port, max_message_bytes=cfg.max_message_bytes)
        g.start()
        self.receivers.append(g)
        self.grpc_port = g.port
        h = OtlpHttpReceiver(self.sink, cfg.bind, cfg.http_port, max_message_bytes=cfg.max_message_bytes)
        h.start()
        self.receivers.append(h)
        self.http_port = h.port

    def listening_line(self) -> str:
        b = self.config.bind
        return (
            f"listening otlp-grpc={b}:{self.grpc_port} otlp-http={b}:{self.http_port} "
            f"api={self.config.api_bind}:{self.api_port}"
        )

    def stop(self) -> None:
        """Stop accepting, drain, persist, close. Safe to call twice."""
        for r in self.receivers:
            try:
                r.stop()
            except Exception:  # noqa: BLE001
                log.exception("receiver stop failed")
        self.receivers.clear()
        self.pipeline.stop()
        for x in reversed(self.extras):
            try:
                x.stop()
            except Exception:  # noqa: BLE001
                log.exception("stop of %s failed", type(x).__name__)
        self.extras.clear()
        if self.api is not None:
            self.api.stop()
            self.api = None
        if self.store is not None:
            self.store.close()
            self.store = None

    def reload(self) -> None:
        """SIGHUP: ask every enricher that can reload its files to do so.

        Runs under the state lock, so no batch is half-analysed with the old
        policy or specs and half with the new.
        """
        with self.state.lock:
            for e in self.enrichers:
                fn = getattr(e, "reload", None)
                if fn is not None:
                    try:
                        fn()
                    except Exception:  # noqa: BLE001
                        log.exception("reload of %s failed", e.name)

    # ---------------------------------------------------------------- replay
    def feed(self, batches: Iterable[list[Span]], source: str = "replay") -> int:
        """Offer batches, waiting while the queue is full (offline use only)."""
        n = 0
        for batch in batches:
            while not self.pipeline.offer(batch, source):
                # Refused batches were counted as dropped; replay retries, so undo that.
                with self.stats._lock:
                    k = (source, "queue_full")
                    self.stats.dropped[k] -= len(batch)
                    self.stats.received[source] -= len(batch)
                time.sleep(0.01)
            n += len(batch)
        return n

    def replay(self, paths: Iterable[str | Path]) -> int:
        """Feed recordings through the pipeline and wait until all is processed."""
        from collectors.replay import iter_recording

        started = self.pipeline._thread is not None
        if not started:
            self.pipeline.start()
        total = 0
        for p in paths:
            total += self.feed(iter_recording(str(p)))
        self.pipeline.wait_idle(timeout=600)
        while self.pipeline.queue_depth:
            time.sleep(0.01)
        self.pipeline.wait_idle(timeout=600)
        self.pipeline.tick_now()
        self.pipeline.tick_now()  # an idle tick: the call graph resolves spans still waiting for a partner
        return total


def _joining_sink(inner: SpanSink) -> SpanSink | None:
    try:
        from collectors.ebpf.join import JoiningSink
    except ModuleNotFoundError:
        return None
    return JoiningSink(inner)  # type: ignore[no-any-return]
