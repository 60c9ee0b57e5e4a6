-- Semantic search planned with its real arguments. As a SQL function with
-- SET clauses, its statement was planned for unknown arguments and never
-- used the HNSW index; dynamic SQL is planned for each call. A filter that
-- leaves few rows (a session, a small organization, a small table) is
-- searched exactly:
-- faster than walking the graph past everything it excludes, and complete.
-- (The set_config below is undone when the function returns: its SET
-- clause for the same setting makes that so.)

CREATE OR REPLACE FUNCTION chathistory_search_semantic(q vector, model text,
    p_org uuid, p_session uuid, p_src text, p_tgt text,
    p_from timestamptz, p_to timestamptz, k integer)
RETURNS TABLE (id uuid, score double precision)
LANGUAGE plpgsql STABLE
SET hnsw.iterative_scan = 'relaxed_order'
SET hnsw.ef_search = '300'
SET hnsw.max_scan_tuples = '100000'
SET enable_seqscan = on
SET jit = off
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
            USING q, model, p_org, p_session, p_src, p_tgt, p_from, p_to;
    END IF;

    IF small THEN
        -- "+ 0" keeps the planner off the (approximate) index
        distance := '(m.embedding <=> $1) + 0';
    ELSE
        -- the distance's cost is underestimated: a scan of every row
        -- looks cheaper than the graph until the table is large
        PERFORM set_config('enable_seqscan', 'off', true);
    END IF;

    RETURN QUERY EXECUTE
        'SELECT c.id, greatest(0, 1 - c.d)::double precision FROM ('
        || 'SELECT m.id, ' || distance || ' AS d FROM messages m'
        || ' WHERE m.embedding_model = $2' || filters
        || ' ORDER BY ' || distance || ' LIMIT $9) c ORDER BY c.d'
        USING q, model, p_org, p_session, p_src, p_tgt, p_from, p_to, k;
END
$$;

-- They return a page of hits, not a thousand rows: the statement around
-- them joins by primary key instead of hashing the whole table.
ALTER FUNCTION chathistory_search_semantic(vector, text, uuid, uuid, text, text,
    timestamptz, timestamptz, integer) ROWS 20;
ALTER FUNCTION chathistory_search_keyword(text, text, uuid, uuid, text, text,
    timestamptz, timestamptz, integer) ROWS 20;
ALTER FUNCTION chathistory_search_hybrid(vector, text, text, text, uuid, uuid,
    text, text, timestamptz, timestamptz, integer) ROWS 20;
