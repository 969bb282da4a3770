"""Tool implementations, one module per family; each exposes `register(mcp, settings)`."""
