"""RAG service: indexing and question answering with cited sources."""
