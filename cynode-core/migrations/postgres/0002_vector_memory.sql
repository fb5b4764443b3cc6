-- Vector memory. Embeddings of any dimension 1..=2000 share one unconstrained `vector`
-- column; `embedding_dim` records the dimension. Approximate (HNSW, cosine) indexes exist
-- per common dimension as partial expression indexes; a search for one of these
-- dimensions casts to the same type so the planner can use the matching index, any other
-- dimension is searched exactly. Adding a dimension is a new migration with one index.
--
-- Build parameters are pgvector's defaults (m = 16, ef_construction = 64) rather than
-- ef_construction = 200: inserts into the graph cost several times less, and search
-- quality is set per query (`hnsw.ef_search`, iterative scan) by the store.

CREATE TABLE vector_items (
    id                uuid PRIMARY KEY,
    project_id        uuid NOT NULL CONSTRAINT vector_items_project_fkey REFERENCES projects (id) ON DELETE CASCADE,
    task_id           uuid CONSTRAINT vector_items_task_fkey REFERENCES tasks (id) ON DELETE SET NULL,
    namespace         text COLLATE "C" NOT NULL,
    sensitivity_level text,
    -- ordinal of sensitivity_level (public 0 < internal 1 < confidential 2 < restricted 3)
    sensitivity_rank  smallint,
    source_type       text NOT NULL,
    source_ref        text,
    chunk_index       int NOT NULL,
    content_text      text NOT NULL,
    content_sha256    text NOT NULL,
    embedding_model   text NOT NULL,
    embedding_dim     int NOT NULL,
    embedding         vector NOT NULL,
    metadata          jsonb,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT vector_items_dim_range_check CHECK (embedding_dim BETWEEN 1 AND 2000),
    CONSTRAINT vector_items_dim_check CHECK (vector_dims(embedding) = embedding_dim),
    CONSTRAINT vector_items_sensitivity_check CHECK (
        (sensitivity_level IS NULL AND sensitivity_rank IS NULL)
        OR (sensitivity_level = 'public' AND sensitivity_rank = 0)
        OR (sensitivity_level = 'internal' AND sensitivity_rank = 1)
        OR (sensitivity_level = 'confidential' AND sensitivity_rank = 2)
        OR (sensitivity_level = 'restricted' AND sensitivity_rank = 3))
);
CREATE INDEX vector_items_project_namespace_idx ON vector_items (project_id, namespace);
CREATE INDEX vector_items_project_source_idx ON vector_items (project_id, source_ref);
CREATE INDEX vector_items_task_idx ON vector_items (task_id);
CREATE INDEX vector_items_source_type_idx ON vector_items (source_type);
CREATE INDEX vector_items_content_sha256_idx ON vector_items (content_sha256);

CREATE INDEX vector_items_embedding_384_hnsw ON vector_items
    USING hnsw ((embedding::vector(384)) vector_cosine_ops) WITH (m = 16, ef_construction = 64)
    WHERE embedding_dim = 384;
CREATE INDEX vector_items_embedding_768_hnsw ON vector_items
    USING hnsw ((embedding::vector(768)) vector_cosine_ops) WITH (m = 16, ef_construction = 64)
    WHERE embedding_dim = 768;
CREATE INDEX vector_items_embedding_1024_hnsw ON vector_items
    USING hnsw ((embedding::vector(1024)) vector_cosine_ops) WITH (m = 16, ef_construction = 64)
    WHERE embedding_dim = 1024;
CREATE INDEX vector_items_embedding_1536_hnsw ON vector_items
    USING hnsw ((embedding::vector(1536)) vector_cosine_ops) WITH (m = 16, ef_construction = 64)
    WHERE embedding_dim = 1536;
