"""Domain metrics of the MCP server: tool calls, refusals, approvals, the audit writer and the audit chain."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from services.mcp_server.catalog import TOOLS
from services.mcp_server.gate.approvals import count_pending, decisions_since
from services.mcp_server.gate.audit_verify import UNCHECKED, VerifyResult, verify
from services.mcp_server.gate.layer import SecurityLayer

log = logging.getLogger(__name__)

# Why a guard refused a call (rate limits are counted apart, by tool).
DENIAL_REASONS = ("authentication", "permission", "audit_unavailable", "approval_stale", "approval_state")
RATE_LIMITED = "rate_limited"
# Approvals take a person: from seconds to the whole APPROVAL_TIMEOUT.
APPROVAL_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600)


def _tool(tool: str) -> str:
    return tool if tool in TOOLS else "other"  # a client's made-up names must not grow the label set


@dataclass(frozen=True)
class ToolMetrics:
    calls: Counter
    seconds: Histogram
    denials: Counter
    rate_limited: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> ToolMetrics:
        metrics = cls(
            calls=Counter("mcp_tool_calls", "Tool calls by tool and final status.", ["tool", "status"],
                          registry=registry),
            seconds=Histogram(
                "mcp_tool_call_seconds", "Time from the security check to the tool's answer.", ["tool"],
                registry=registry, buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30),
            ),
            denials=Counter("mcp_denials", "Calls a guard refused, by the reason (rate limits apart).", ["reason"],
                            registry=registry),
            rate_limited=Counter("mcp_rate_limited", "Calls refused by the caller's rate limit, by tool.", ["tool"],
                                 registry=registry),
        )
        # every series from the start, so a dashboard shows 0 rather than nothing
        for reason in DENIAL_REASONS:
            metrics.denials.labels(reason)
        for tool in TOOLS:
            metrics.rate_limited.labels(tool)
        return metrics

    def observe(self, tool: str, status: str, seconds: float) -> None:
        """Record one call; the middleware calls this for every outcome."""
        tool = _tool(tool)
        self.calls.labels(tool, status).inc()
        self.seconds.labels(tool).observe(seconds)

    def refused(self, tool: str, reason: str) -> None:
        """Record a call a guard refused, and why."""
        if reason == RATE_LIMITED:
            self.rate_limited.labels(_tool(tool)).inc()
        else:
            self.denials.labels(reason).inc()


class AuditChecks:
    """Verifies the audit chain at start and every AUDIT_VERIFY_INTERVAL seconds; keeps the last verdict."""

    def __init__(self, layer: SecurityLayer) -> None:
        self.layer = layer
        self.ok: bool | None = None  # None until a verification has come to a verdict
        self.at: float | None = None

    def record(self, result: VerifyResult) -> None:
        if result.verdict == UNCHECKED:  # busy or unreadable: no verdict, the previous one stands
            log.warning("the audit chain could not be checked: %s", result.reason)
            return
        self.ok, self.at = result.ok, time.time()
        if not result.ok:
            where = f"row {result.bad_row}: " if result.bad_row is not None else ""
            log.error("the audit chain does not verify (%s%s); run: ai-suite audit verify", where, result.reason)

    async def run(self) -> None:
        settings = self.layer.settings
        while True:
            try:
                self.record(await asyncio.to_thread(verify, self.layer.db_path, settings.audit_key_path()))
            except OSError as exc:  # an unreadable key or head file: no verdict, as with a busy database
                log.warning("the audit chain could not be checked: %s", exc)
            if not settings.audit_verify_interval:
                return
            await asyncio.sleep(settings.audit_verify_interval)


class SecurityCollector(Collector):
    """Approvals, the audit writer and the last chain verification, read at each scrape.

    Approvals are read through a read-only connection of its own: in WAL mode a reader never waits for a
    writer, so a scrape cannot stall the event loop behind a decision being written.
    """

    def __init__(self, layer: SecurityLayer, checks: AuditChecks) -> None:
        self.layer = layer
        self.checks = checks
        self._conn: sqlite3.Connection | None = None
        self.wait = Histogram("mcp_approval_wait_seconds", "Time from an approval request to its decision.",
                              buckets=APPROVAL_BUCKETS, registry=None)
        self._since = time.time()  # decisions made before the server started are not this server's to time

    def describe(self) -> Iterator[Metric]:
        yield from self._gauges(pending=0)
        yield from self.wait.describe()
        yield from self._verification(0.0, 0.0)

    def collect(self) -> Iterator[Metric]:
        try:
            if self._conn is None:
                self._conn = sqlite3.connect(f"{self.layer.db_path.as_uri()}?mode=ro", uri=True, timeout=1.0,
                                             check_same_thread=False)
            pending: int | None = count_pending(self._conn, time.time())
            # decisions come from `ai-approvals` in other processes too: the database is where they meet
            for decided_at, waited in decisions_since(self._conn, self._since):
                self.wait.observe(max(0.0, waited))
                self._since = decided_at
        except sqlite3.Error as exc:
            log.warning("approvals cannot be read for /metrics: %s", exc)
            pending = None
        yield from self._gauges(pending)
        yield from self.wait.collect()
        if self.checks.ok is not None and self.checks.at is not None:
            yield from self._verification(1.0 if self.checks.ok else 0.0, self.checks.at)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _gauges(self, pending: int | None) -> Iterator[Metric]:
        if pending is not None:
            yield GaugeMetricFamily("mcp_approvals_pending", "Approval requests waiting for a decision.", pending)
        audit = self.layer.audit
        yield GaugeMetricFamily("mcp_audit_queue_depth", "Audit rows queued or being written, not yet committed.",
                                audit.uncommitted())
        yield GaugeMetricFamily("mcp_audit_write_lag_seconds", "Age of the oldest audit row not yet committed.",
                                audit.write_lag())

    @staticmethod
    def _verification(ok: float, at: float) -> Iterator[Metric]:
        yield GaugeMetricFamily("mcp_audit_last_verification_ok",
                                "1 when the last verification found the audit chain intact, 0 when it did not.", ok)
        yield GaugeMetricFamily("mcp_audit_last_verification_timestamp_seconds",
                                "Unix time of the last verification of the audit chain.", at)
