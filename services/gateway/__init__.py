"""The OpenAI-compatible API gateway: model names, `auto` routing, retries and failover."""
