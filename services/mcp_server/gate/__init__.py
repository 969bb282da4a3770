"""The call gate every tool call passes: identity, rate limit, RBAC, approval, and the keyed audit chain."""
