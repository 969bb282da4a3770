"""Identity, RBAC, approvals, audit, rate limits and path and network guards."""
