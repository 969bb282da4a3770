"""Domain metrics of the MCP server: tool calls by outcome, and their duration."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram

from services.mcp_server.catalog import TOOLS


@dataclass(frozen=True)
class ToolMetrics:
    calls: Counter
    seconds: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry) -> ToolMetrics:
        return cls(
            calls=Counter("mcp_tool_calls", "Tool calls by tool and final status.", ["tool", "status"],
                          registry=registry),
            seconds=Histogram(
                "mcp_tool_call_seconds", "Time from the security check to the tool's answer.", ["tool"],
                registry=registry, buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30),
            ),
        )

    def observe(self, tool: str, status: str, seconds: float) -> None:
        """Record one call; the middleware calls this for every outcome."""
        tool = tool if tool in TOOLS else "other"  # a client's made-up names must not grow the label set
        self.calls.labels(tool, status).inc()
        self.seconds.labels(tool).observe(seconds)
