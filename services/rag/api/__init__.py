"""HTTP routes of the RAG service, thin over indexing, retrieval and answer."""
