"""Adapters to the systems the RAG service depends on: postgres, Qdrant, embedding, gateway."""
