"""Embedding service: FastEmbed (ONNX) behind `/embed` and OpenAI `/v1/embeddings`."""
