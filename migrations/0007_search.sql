-- Search: full-text vectors of both texts, in the messages' languages where
-- known, and the three rankings the API offers (semantic, keyword, hybrid).

-- The text search configuration of a BCP 47 tag's language, else 'simple'.
CREATE FUNCTION chathistory_ts_config(lang text) RETURNS regconfig
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (CASE lower(split_part(coalesce(lang, ''), '-', 1))
        WHEN 'da' THEN 'danish' WHEN 'de' THEN 'german'
        WHEN 'en' THEN 'english' WHEN 'es' THEN 'spanish'
        WHEN 'fi' THEN 'finnish' WHEN 'fr' THEN 'french'
        WHEN 'hu' THEN 'hungarian' WHEN 'it' THEN 'italian'
        WHEN 'nb' THEN 'norwegian' WHEN 'nl' THEN 'dutch'
        WHEN 'no' THEN 'norwegian' WHEN 'pt' THEN 'portuguese'
        WHEN 'ro' THEN 'romanian' WHEN 'ru' THEN 'russian'
        WHEN 'sv' THEN 'swedish' WHEN 'tr' THEN 'turkish'
        ELSE 'simple' END)::regconfig
$$;

-- Words as written (names, numbers) and stemmed in each text's language.
ALTER TABLE messages ADD COLUMN search_tsv tsvector GENERATED ALWAYS AS (
    to_tsvector('simple'::regconfig,
                coalesce(source_text, '') || ' ' || coalesce(translated_text, ''))
    || to_tsvector(chathistory_ts_config(source_lang), coalesce(source_text, ''))
    || to_tsvector(chathistory_ts_config(target_lang),
                   coalesce(translated_text, ''))
) STORED;

CREATE INDEX messages_search_tsv_idx ON messages USING gin (search_tsv);

-- Nearest messages by cosine distance through the HNSW index. pgvector
-- 0.8's iterative scan goes on past filtered-out rows until k are found.
CREATE FUNCTION chathistory_search_semantic(q vector, model text,
    p_org uuid, p_session uuid, p_src text, p_tgt text,
    p_from timestamptz, p_to timestamptz, k integer)
RETURNS TABLE (id uuid, score double precision)
LANGUAGE sql STABLE
SET hnsw.iterative_scan = 'relaxed_order'
SET hnsw.ef_search = '200'
AS $$
    WITH c AS MATERIALIZED (
        SELECT m.id, m.embedding <=> q AS distance
        FROM messages m
        WHERE m.embedding_model = model
          AND (p_org IS NULL OR m.org_id = p_org)
          AND (p_session IS NULL OR m.session_id = p_session)
          AND (p_src IS NULL OR m.source_lang = p_src)
          AND (p_tgt IS NULL OR m.target_lang = p_tgt)
          AND (p_from IS NULL OR m.created_at >= p_from)
          AND (p_to IS NULL OR m.created_at <= p_to)
        ORDER BY m.embedding <=> q
        LIMIT k)
    SELECT c.id, greatest(0, 1 - c.distance) FROM c ORDER BY c.distance
$$;

-- Full-text matches, ranked by cover density, scored into 0..1.
CREATE FUNCTION chathistory_search_keyword(q text, lang text,
    p_org uuid, p_session uuid, p_src text, p_tgt text,
    p_from timestamptz, p_to timestamptz, k integer)
RETURNS TABLE (id uuid, score double precision)
LANGUAGE sql STABLE AS $$
    WITH query AS (
        SELECT websearch_to_tsquery('simple'::regconfig, q)
               || websearch_to_tsquery(chathistory_ts_config(lang), q) AS tsq),
    c AS (
        SELECT m.id, m.created_at, ts_rank_cd(m.search_tsv, query.tsq) AS rank
        FROM messages m, query
        WHERE m.search_tsv @@ query.tsq
          AND (p_org IS NULL OR m.org_id = p_org)
          AND (p_session IS NULL OR m.session_id = p_session)
          AND (p_src IS NULL OR m.source_lang = p_src)
          AND (p_tgt IS NULL OR m.target_lang = p_tgt)
          AND (p_from IS NULL OR m.created_at >= p_from)
          AND (p_to IS NULL OR m.created_at <= p_to)
        ORDER BY rank DESC, m.created_at DESC
        LIMIT k)
    SELECT c.id, (c.rank / (1 + c.rank))::double precision FROM c
    ORDER BY c.rank DESC, c.created_at DESC
$$;

-- Reciprocal rank fusion of both (k = 60), scaled so that first in both
-- lists scores 1.
CREATE FUNCTION chathistory_search_hybrid(qv vector, model text, q text,
    lang text, p_org uuid, p_session uuid, p_src text, p_tgt text,
    p_from timestamptz, p_to timestamptz, k integer)
RETURNS TABLE (id uuid, score double precision)
LANGUAGE sql STABLE AS $$
    SELECT r.id, sum(1.0 / (60 + r.rank)) * 61 / 2 AS score
    FROM (
        SELECT s.id, row_number() OVER (ORDER BY s.score DESC) AS rank
        FROM chathistory_search_semantic(qv, model, p_org, p_session, p_src,
                                         p_tgt, p_from, p_to, k * 4) s
        UNION ALL
        SELECT w.id, row_number() OVER (ORDER BY w.score DESC) AS rank
        FROM chathistory_search_keyword(q, lang, p_org, p_session, p_src,
                                        p_tgt, p_from, p_to, k * 4) w
    ) r
    GROUP BY r.id
    ORDER BY score DESC
    LIMIT k
$$;
