-- Translation sessions and their messages, with the embeddings for search.

CREATE TABLE sessions (
    id             uuid        PRIMARY KEY DEFAULT chathistory_uuidv7(),
    org_id         uuid        NOT NULL
                               REFERENCES organizations ON DELETE CASCADE,
    title          text,
    source_lang    text        NOT NULL,
    target_lang    text        NOT NULL,
    audio_enabled  boolean     NOT NULL DEFAULT false,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    -- created_at + the organization's retention_days; NULL keeps it forever
    expires_at     timestamptz
);

-- newest first, keyset-paginated, with and without the org filter
CREATE INDEX sessions_created_at_id_idx
    ON sessions (created_at DESC, id DESC);
CREATE INDEX sessions_org_id_created_at_id_idx
    ON sessions (org_id, created_at DESC, id DESC);

-- retention cleanup
CREATE INDEX sessions_expires_at_idx
    ON sessions (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE messages (
    id               uuid        PRIMARY KEY DEFAULT chathistory_uuidv7(),
    session_id       uuid        NOT NULL
                                 REFERENCES sessions ON DELETE CASCADE,
    org_id           uuid        NOT NULL
                                 REFERENCES organizations ON DELETE CASCADE,
    created_at       timestamptz NOT NULL DEFAULT now(),
    source_lang      text        NOT NULL,
    target_lang      text        NOT NULL,
    source_text      text,
    translated_text  text,
    stt_ms           integer,
    translate_ms     integer,
    tts_ms           integer,
    model_used       text,
    -- relative to audio_storage_path: {session_id}/{message_id}.opus
    audio_path       text,
    audio_ms         integer,
    embedding        vector(768),
    -- the model the embedding came from; NULL while it is pending
    embedding_model  text
);

-- semantic search: cosine distance, the operator <=>
CREATE INDEX messages_embedding_idx
    ON messages USING hnsw (embedding vector_cosine_ops);

-- a session's conversation, in order either way
CREATE INDEX messages_session_id_created_at_id_idx
    ON messages (session_id, created_at, id);

-- an organization's messages by time (search filters, org deletion)
CREATE INDEX messages_org_id_created_at_idx
    ON messages (org_id, created_at);
