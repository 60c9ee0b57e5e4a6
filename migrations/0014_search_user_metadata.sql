-- "this user's sessions, newest first" across organizations (/api without
-- org_id): 0013's index leads with org_id, and PostgreSQL 15 cannot skip
-- its leading column, so such a list read the whole index (5 ms at 200 000
-- sessions, 66 000 of them with a user, and growing with them); this one
-- reads the user's rows only. Partial like 0013's: sessions without a user
-- are not in it.
CREATE INDEX sessions_user_id_created_at_id_idx
    ON sessions (user_id, created_at DESC, id DESC)
    WHERE user_id IS NOT NULL;

-- Search narrowed to one end user's sessions (sessions.user_id) and to
-- sessions whose metadata contains an object (metadata @> ...). The three
-- rankings take two more filters; the versions without them stay, so that
-- an nginx not yet reloaded keeps searching until it is. A filter on them
-- is a semi-join with the sessions it keeps, through 0013's indexes.

CREATE FUNCTION chathistory_search_semantic(q vector, model text,
    p_org uuid, p_session uuid, p_src text, p_tgt text,
    p_from timestamptz, p_to timestamptz, k integer,
    p_user text, p_meta jsonb)
RETURNS TABLE (id uuid, score double precision)
LANGUAGE plpgsql STABLE
SET hnsw.iterative_scan = 'relaxed_order'
SET hnsw.ef_search = '100'
SET hnsw.max_scan_tuples = '100000'
SET enable_seqscan = on
SET jit = off
ROWS 20
AS $$
DECLARE
    filters  text := '';
    small    boolean := false;
    distance text := 'm.embedding <=> $1';
BEGIN
    IF p_org IS NOT NULL THEN filters := filters || ' AND m.org_id = $3'; END IF;
    IF p_session IS NOT NULL THEN
        filters := filters || ' AND m.session_id = $4';
    END IF;
    IF p_src IS NOT NULL THEN filters := filters || ' AND m.source_lang = $5'; END IF;
    IF p_tgt IS NOT NULL THEN filters := filters || ' AND m.target_lang = $6'; END IF;
    IF p_from IS NOT NULL THEN filters := filters || ' AND m.created_at >= $7'; END IF;
    IF p_to IS NOT NULL THEN filters := filters || ' AND m.created_at <= $8'; END IF;
    IF p_user IS NOT NULL THEN
        filters := filters || ' AND m.session_id IN (SELECT s.id FROM sessions s'
                           || ' WHERE s.user_id = $10'
                           || CASE WHEN p_org IS NOT NULL
                                   THEN ' AND s.org_id = $3' ELSE '' END
                           || ')';
    END IF;
    IF p_meta IS NOT NULL THEN
        filters := filters || ' AND m.session_id IN (SELECT s.id FROM sessions s'
                           || ' WHERE s.metadata @> $11)';
    END IF;

    IF p_session IS NOT NULL
       OR (SELECT c.reltuples < 20000 FROM pg_class c
           WHERE c.oid = 'messages'::regclass)
    THEN
        small := true;
    ELSIF filters <> '' THEN
        EXECUTE 'SELECT count(*) < 20000 FROM (SELECT 1 FROM messages m'
                || ' WHERE m.embedding_model = $2' || filters
                || ' LIMIT 20000) x'
            INTO small
            USING q, model, p_org, p_session, p_src, p_tgt, p_from, p_to, k,
                  p_user, p_meta;
    END IF;

    IF small THEN
        -- "+ 0" keeps the planner off the (approximate) index
        distance := '(m.embedding <=> $1) + 0';
    ELSE
        PERFORM set_config('enable_seqscan', 'off', true);
    END IF;

    RETURN QUERY EXECUTE
        'SELECT c.id, greatest(0, 1 - c.d)::double precision FROM ('
        || 'SELECT m.id, ' || distance || ' AS d FROM messages m'
        || ' WHERE m.embedding_model = $2' || filters
        || ' ORDER BY ' || distance || ' LIMIT $9) c ORDER BY c.d'
        USING q, model, p_org, p_session, p_src, p_tgt, p_from, p_to, k,
              p_user, p_meta;
END
$$;

CREATE FUNCTION chathistory_search_keyword(q text, lang text,
    p_org uuid, p_session uuid, p_src text, p_tgt text,
    p_from timestamptz, p_to timestamptz, k integer,
    p_user text, p_meta jsonb)
RETURNS TABLE (id uuid, score double precision)
LANGUAGE sql STABLE ROWS 20 AS $$
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
          AND (p_user IS NULL OR m.session_id IN (SELECT s.id FROM sessions s
                                                  WHERE s.user_id = p_user))
          AND (p_meta IS NULL OR m.session_id IN (SELECT s.id FROM sessions s
                                                  WHERE s.metadata @> p_meta))
        ORDER BY rank DESC, m.created_at DESC
        LIMIT k)
    SELECT c.id, (c.rank / (1 + c.rank))::double precision FROM c
    ORDER BY c.rank DESC, c.created_at DESC
$$;

CREATE FUNCTION chathistory_search_hybrid(qv vector, model text, q text,
    lang text, p_org uuid, p_session uuid, p_src text, p_tgt text,
    p_from timestamptz, p_to timestamptz, k integer,
    p_user text, p_meta jsonb)
RETURNS TABLE (id uuid, score double precision)
LANGUAGE sql STABLE ROWS 20 AS $$
    SELECT r.id, sum(1.0 / (60 + r.rank)) * 61 / 2 AS score
    FROM (
        SELECT s.id, row_number() OVER (ORDER BY s.score DESC) AS rank
        FROM chathistory_search_semantic(qv, model, p_org, p_session, p_src,
                                         p_tgt, p_from, p_to, k * 4,
                                         p_user, p_meta) s
        UNION ALL
        SELECT w.id, row_number() OVER (ORDER BY w.score DESC) AS rank
        FROM chathistory_search_keyword(q, lang, p_org, p_session, p_src,
                                        p_tgt, p_from, p_to, k * 4,
                                        p_user, p_meta) w
    ) r
    GROUP BY r.id
    ORDER BY score DESC
    LIMIT k
$$;
