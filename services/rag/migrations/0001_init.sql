-- RAG tables (collections, documents, chunks, search_logs) and system tables.
CREATE TABLE collections (
    name            text PRIMARY KEY,
    embedding_model text,
    dim             integer,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE documents (
    id          text PRIMARY KEY,
    collection  text NOT NULL REFERENCES collections(name) ON DELETE CASCADE,
    path        text NOT NULL,
    file_hash   text NOT NULL,
    bytes       bigint NOT NULL,
    chunk_count integer NOT NULL,
    indexed_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (collection, path)
);

CREATE TABLE chunks (
    id           uuid PRIMARY KEY,
    document_id  text NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    collection   text NOT NULL,
    chunk_index  integer NOT NULL,
    text         text NOT NULL,
    token_count  integer NOT NULL,
    content_hash text NOT NULL,
    terms        text[] NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX chunks_document ON chunks (document_id);
CREATE INDEX chunks_collection ON chunks (collection);

CREATE TABLE search_logs (
    id          bigserial PRIMARY KEY,
    kind        text NOT NULL,
    collection  text NOT NULL,
    query       text NOT NULL,
    top_k       integer NOT NULL,
    hybrid      boolean NOT NULL,
    chunk_ids   uuid[] NOT NULL,
    latency_ms  double precision NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX search_logs_created ON search_logs (created_at);

CREATE TABLE system_settings (
    key        text PRIMARY KEY,
    value      jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE user_preferences (
    user_id    text NOT NULL,
    key        text NOT NULL,
    value      jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);
