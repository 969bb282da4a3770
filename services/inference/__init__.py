"""The inference service: one GGUF model behind an OpenAI-compatible API."""
