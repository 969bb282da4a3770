"""Unit tests of the RAG service."""
