"""MCP server: the suite's tools behind RBAC, approvals, audit and rate limits."""
