
/*
 * The module's SQL. PostgreSQL renders the JSON the API answers with, so a
 * row leaves the database ready to send.
 */


#include "ngx_http_chathistory_statements.h"


#define CH_RFC3339(col)                                                       \
    "to_char(" col " AT TIME ZONE 'UTC', "                                    \
    "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

/* a compact JSON object of a session row "s", with extra columns */
#define CH_SESSION_JSON(extra)                                                \
    "(SELECT row_to_json(x) FROM (SELECT s.id, s.org_id, s.title, "           \
    "s.source_lang, s.target_lang, s.audio_enabled, s.user_id, s.metadata, "  \
    CH_RFC3339("s.created_at") " AS created_at, "                             \
    CH_RFC3339("s.updated_at") " AS updated_at, "                             \
    CH_RFC3339("s.expires_at") " AS expires_at" extra ") x)"

#define CH_MESSAGE_COUNT  ", s.message_count"

/* a session's JSON and its entity tag: a digest of that very text, so it
 * changes whenever the representation does (a message counted, a new
 * expiry) and is the same in every worker */
#define CH_SESSION_ETAG                                                       \
    "md5(" CH_SESSION_JSON(CH_MESSAGE_COUNT) "::text)"

/* $n is the organization a caller is confined to, NULL for none */
#define CH_IN_SCOPE(n)                                                        \
    "($" #n "::uuid IS NULL OR s.org_id = $" #n "::uuid)"

/* a recorded message "r" goes only into a session of its key's org */
#define CH_RECORD_IN_SCOPE                                                    \
    "(r.org_id IS NULL OR s.org_id = r.org_id)"

/* the keyset position after which a newest-first page starts */
#define CH_BEFORE_CURSOR                                                      \
    "(s.created_at, s.id) < ("                                                \
    "CASE WHEN $2::bigint IS NULL THEN 'infinity'::timestamptz "              \
    "ELSE 'epoch'::timestamptz + $2::bigint * interval '1 microsecond' END, " \
    "COALESCE($3::uuid, 'ffffffff-ffff-ffff-ffff-ffffffffffff'))"

#define CH_CURSOR_KEY                                                         \
    "(extract(epoch FROM s.created_at) * 1000000)::bigint, s.id"


/* a compact JSON object of a message row "m"; $p is the API's prefix */
#define CH_MESSAGE_JSON(p)                                                    \
    "(SELECT row_to_json(x) FROM (SELECT m.id, m.session_id, "                \
    CH_RFC3339("m.created_at") " AS created_at, "                             \
    "m.source_lang, m.target_lang, m.source_text, m.translated_text, "        \
    "m.stt_ms, m.translate_ms, m.tts_ms, m.model_used, "                      \
    "m.audio_path IS NOT NULL AS has_audio, "                                 \
    "CASE WHEN m.audio_path IS NOT NULL THEN $" #p "::text || m.session_id "  \
    "|| '/messages/' || m.id || '/audio' END AS audio_url, "                  \
    "CASE WHEN m.embedding IS NOT NULL THEN 'ready' "                         \
    "WHEN EXISTS (SELECT 1 FROM jobs j WHERE j.kind = 'embed_message' "       \
    "AND j.status = 'failed' AND j.payload->>'message_id' = m.id::text) "     \
    "THEN 'failed' ELSE 'pending' END AS embedding_status) x)"

/* a session's messages after a cursor, one row with NULLs if none;
 * no row at all when the session does not exist */
#define CH_MESSAGE_PAGE(cmp, order, start, start_id)                          \
    "SELECT p.json, p.micros, p.id FROM sessions s LEFT JOIN LATERAL ("       \
    "SELECT " CH_MESSAGE_JSON(6) " AS json, "                                 \
    "(extract(epoch FROM m.created_at) * 1000000)::bigint AS micros, m.id "   \
    "FROM messages m WHERE m.session_id = s.id AND (m.created_at, m.id) "     \
    cmp " (CASE WHEN $3::bigint IS NULL THEN '" start "'::timestamptz "       \
    "ELSE 'epoch'::timestamptz + $3::bigint * interval '1 microsecond' END, " \
    "COALESCE($4::uuid, '" start_id "')) "                                    \
    "ORDER BY m.created_at " order ", m.id " order " LIMIT $5::integer"       \
    ") p ON true WHERE s.id = $1::uuid AND " CH_IN_SCOPE(2)


/* one search hit: the message, its session and the score */
#define CH_SEARCH_HITS(ranking, prefix)                                       \
    "SELECT (SELECT row_to_json(x) FROM (SELECT "                             \
    CH_MESSAGE_JSON(prefix) " AS message, " CH_SESSION_JSON("")               \
    " AS session, round(r.score::numeric, 6) AS score) x) "                   \
    "FROM " ranking " r JOIN messages m ON m.id = r.id "                      \
    "JOIN sessions s ON s.id = m.session_id ORDER BY r.score DESC, m.id"

/* filters shared by the rankings, from $n on: org, session, languages,
 * time range */
#define CH_SEARCH_FILTERS(a, b, c, d, e, f)                                   \
    "$" #a "::uuid, $" #b "::uuid, $" #c "::text, $" #d "::text, "            \
    "$" #e "::timestamptz, $" #f "::timestamptz"

/* the filters on the hits' sessions: user_id, metadata contained */
#define CH_SEARCH_SESSION_FILTERS(a, b)                                       \
    "$" #a "::text, $" #b "::jsonb"


static const ngx_http_chathistory_statement_t  ngx_http_chathistory_sql[] = {

    /* $1 id, $2 org or NULL for the default, $3 title, $4-$5 languages,
     * $6 audio_enabled, $7 user_id, $8 metadata; the JSON and its tag */
    { "chathistory_session_create",
      "WITH s AS (INSERT INTO sessions AS s (id, org_id, title, source_lang, "
      "target_lang, audio_enabled, user_id, metadata, created_at, "
      "updated_at, expires_at) "
      "SELECT $1::uuid, o.id, $3::text, $4::text, $5::text, $6::boolean, "
      "$7::text, $8::jsonb, "
      "now(), now(), now() + make_interval(days => o.retention_days) "
      "FROM organizations o WHERE o.id = COALESCE($2::uuid, "
      "(SELECT id FROM organizations WHERE name = 'default')) "
      "RETURNING " CH_SESSION_JSON(CH_MESSAGE_COUNT) " AS j) "
      "SELECT j, md5(j::text) FROM s",
      8 },

    /* $1 id, $2 scope: the JSON and its tag */
    { "chathistory_session_get",
      "SELECT j, md5(j::text) FROM (SELECT "
      CH_SESSION_JSON(CH_MESSAGE_COUNT) " AS j "
      "FROM sessions s WHERE s.id = $1::uuid AND " CH_IN_SCOPE(2) ") x",
      2 },

    /* $1 org filter or NULL, $2-$3 cursor or NULL, $4 limit, $5 user_id
     * or NULL, $6 metadata contained or NULL */
    { "chathistory_session_list",
      "SELECT " CH_SESSION_JSON("") ", " CH_CURSOR_KEY
      " FROM sessions s WHERE " CH_IN_SCOPE(1) " AND "
      "($5::text IS NULL OR s.user_id = $5::text) AND "
      "($6::jsonb IS NULL OR s.metadata @> $6::jsonb) AND "
      CH_BEFORE_CURSOR " ORDER BY s.created_at DESC, s.id DESC "
      "LIMIT $4::integer",
      6 },

    /* $1 id, $2 scope, $3 whether to set the title, $4 title,
     * $5 audio_enabled or NULL, $6 whether to set user_id, $7 user_id,
     * $8 whether to set metadata, $9 metadata, $10 the If-Match tags
     * (comma-separated) or NULL for any: the new JSON and its tag; a row
     * of NULLs when the session is there but matches none of the tags;
     * no row when it is not there. The tag is compared with the row the
     * UPDATE locks, so a change in between is not overwritten. */
    { "chathistory_session_update",
      "WITH u AS (UPDATE sessions AS s SET "
      "title = CASE WHEN $3::boolean THEN $4::text ELSE s.title END, "
      "audio_enabled = COALESCE($5::boolean, s.audio_enabled), "
      "user_id = CASE WHEN $6::boolean THEN $7::text ELSE s.user_id END, "
      "metadata = CASE WHEN $8::boolean THEN $9::jsonb ELSE s.metadata END, "
      "updated_at = now() "
      "WHERE s.id = $1::uuid AND " CH_IN_SCOPE(2) " "
      "AND ($10::text IS NULL OR " CH_SESSION_ETAG
      " = ANY (string_to_array($10::text, ','))) "
      "RETURNING " CH_SESSION_JSON(CH_MESSAGE_COUNT) " AS j) "
      "SELECT j, md5(j::text) FROM u "
      "UNION ALL SELECT NULL, NULL FROM sessions s "
      "WHERE s.id = $1::uuid AND " CH_IN_SCOPE(2)
      " AND NOT EXISTS (SELECT 1 FROM u)",
      10 },

    /* $1 id, $2 scope: the session's row if it was there; the audio files
     * go through a job, in the same transaction, so a crash cannot leave
     * them behind */
    { "chathistory_session_delete",
      "WITH d AS (DELETE FROM sessions AS s WHERE s.id = $1::uuid AND "
      CH_IN_SCOPE(2) " RETURNING s.id, s.org_id), "
      "j AS (INSERT INTO jobs (kind, payload) "
      "SELECT 'delete_audio', jsonb_build_object('session_id', d.id, "
      "'org_id', d.org_id) FROM d) "
      "SELECT d.id FROM d",
      2 },

    /* $1 session, $2 scope, $3-$4 cursor or NULL, $5 limit, $6 prefix */
    { "chathistory_message_list_asc",
      CH_MESSAGE_PAGE(">", "ASC", "-infinity",
                      "00000000-0000-0000-0000-000000000000"),
      6 },

    { "chathistory_message_list_desc",
      CH_MESSAGE_PAGE("<", "DESC", "infinity",
                      "ffffffff-ffff-ffff-ffff-ffffffffffff"),
      6 },

    /* $1 id, $2 session, $3 source text, $4 translation, $5-$7 timings,
     * $8 model, $9 audio path, $10 audio ms, $11 scope; answers whether
     * the session exists (in the scope). Its embedding job goes in the
     * same transaction, and a replayed record that is already in is not
     * written twice. */
    { "chathistory_message_record",
      "WITH s AS (SELECT id, org_id, source_lang, target_lang "
      "FROM sessions s WHERE id = $2::uuid AND " CH_IN_SCOPE(11) "), "
      "m AS (INSERT INTO messages (id, session_id, org_id, source_lang, "
      "target_lang, source_text, translated_text, stt_ms, translate_ms, "
      "tts_ms, model_used, audio_path, audio_ms) "
      "SELECT $1::uuid, s.id, s.org_id, s.source_lang, s.target_lang, "
      "$3::text, $4::text, $5::integer, $6::integer, $7::integer, $8::text, "
      "$9::text, $10::integer FROM s "
      "ON CONFLICT (id) DO NOTHING RETURNING id), "
      "j AS (INSERT INTO jobs (kind, payload) "
      "SELECT 'embed_message', jsonb_build_object('message_id', m.id) "
      "FROM m) "
      "SELECT count(*) FROM s",
      11 },

    /* $1 a JSON array of records (the fields above by name): the same
     * writes for all of them; answers, in order, whether each session
     * exists */
    { "chathistory_message_record_batch",
      "WITH r AS (SELECT x.ord, (x.e->>'id')::uuid AS id, "
      "(x.e->>'session_id')::uuid AS session_id, "
      "x.e->>'source_text' AS source_text, "
      "x.e->>'translated_text' AS translated_text, "
      "(x.e->>'stt_ms')::integer AS stt_ms, "
      "(x.e->>'translate_ms')::integer AS translate_ms, "
      "(x.e->>'tts_ms')::integer AS tts_ms, "
      "x.e->>'model_used' AS model_used, x.e->>'audio_path' AS audio_path, "
      "(x.e->>'audio_ms')::integer AS audio_ms, "
      "(x.e->>'org_id')::uuid AS org_id "
      "FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS x(e, ord)), "
      "m AS (INSERT INTO messages (id, session_id, org_id, source_lang, "
      "target_lang, source_text, translated_text, stt_ms, translate_ms, "
      "tts_ms, model_used, audio_path, audio_ms) "
      "SELECT r.id, s.id, s.org_id, s.source_lang, s.target_lang, "
      "r.source_text, r.translated_text, r.stt_ms, r.translate_ms, "
      "r.tts_ms, r.model_used, r.audio_path, r.audio_ms "
      "FROM r JOIN sessions s ON s.id = r.session_id "
      "AND " CH_RECORD_IN_SCOPE " ORDER BY r.ord "
      "ON CONFLICT (id) DO NOTHING RETURNING id), "
      "j AS (INSERT INTO jobs (kind, payload) "
      "SELECT 'embed_message', jsonb_build_object('message_id', m.id) "
      "FROM m) "
      "SELECT r.ord, s.id IS NOT NULL FROM r "
      "LEFT JOIN sessions s ON s.id = r.session_id "
      "AND " CH_RECORD_IN_SCOPE " ORDER BY r.ord",
      1 },

    /* $1 session, $2 the request's user_id or NULL, $3 scope: is it
     * there, does it keep audio, whose is it, and has it a user_id; a
     * session without one takes the request's (in the scope only) */
    { "chathistory_session_capture",
      "WITH u AS (UPDATE sessions AS s SET user_id = $2::text, "
      "updated_at = now() WHERE s.id = $1::uuid AND s.user_id IS NULL "
      "AND $2::text IS NOT NULL AND " CH_IN_SCOPE(3) " RETURNING s.id) "
      "SELECT audio_enabled, org_id, "
      "user_id IS NOT NULL OR EXISTS (SELECT 1 FROM u) "
      "FROM sessions WHERE id = $1::uuid",
      3 },

    /* $1 message, $2 session, $3 scope: its audio file, if any */
    { "chathistory_message_audio",
      "SELECT m.audio_path FROM messages m JOIN sessions s "
      "ON s.id = m.session_id WHERE m.id = $1::uuid "
      "AND m.session_id = $2::uuid AND " CH_IN_SCOPE(3),
      3 },

    /* $1 vector, $2 model, $3-$8 filters, $9 limit, $10 prefix,
     * $11 user_id, $12 metadata */
    { "chathistory_search_semantic",
      CH_SEARCH_HITS("chathistory_search_semantic($1::vector, $2::text, "
                     CH_SEARCH_FILTERS(3, 4, 5, 6, 7, 8) ", $9::integer, "
                     CH_SEARCH_SESSION_FILTERS(11, 12) ")",
                     10),
      12 },

    /* $1 query, $2 language, $3-$8 filters, $9 limit, $10 prefix,
     * $11 user_id, $12 metadata */
    { "chathistory_search_keyword",
      CH_SEARCH_HITS("chathistory_search_keyword($1::text, $2::text, "
                     CH_SEARCH_FILTERS(3, 4, 5, 6, 7, 8) ", $9::integer, "
                     CH_SEARCH_SESSION_FILTERS(11, 12) ")",
                     10),
      12 },

    /* $1 vector, $2 model, $3-$8 filters, $9 limit, $10 prefix,
     * $11 query, $12 language, $13 user_id, $14 metadata */
    { "chathistory_search_hybrid",
      CH_SEARCH_HITS("chathistory_search_hybrid($1::vector, $2::text, "
                     "$11::text, $12::text, "
                     CH_SEARCH_FILTERS(3, 4, 5, 6, 7, 8) ", $9::integer, "
                     CH_SEARCH_SESSION_FILTERS(13, 14) ")",
                     10),
      14 },

    /* $1 org or NULL for the default, $2 scope */
    { "chathistory_retention_get",
      "SELECT (SELECT row_to_json(x) FROM (SELECT o.id AS org_id, "
      "o.retention_days) x) FROM organizations o "
      "WHERE o.id = COALESCE($1::uuid, "
      "(SELECT id FROM organizations WHERE name = 'default')) "
      "AND ($2::uuid IS NULL OR o.id = $2::uuid)",
      2 },

    /* $1 org or NULL, $2 scope, $3 days or NULL, $4 apply to existing */
    { "chathistory_retention_set",
      "WITH o AS (UPDATE organizations SET retention_days = $3::integer "
      "WHERE id = COALESCE($1::uuid, "
      "(SELECT id FROM organizations WHERE name = 'default')) "
      "AND ($2::uuid IS NULL OR id = $2::uuid) "
      "RETURNING id, retention_days), "
      "s AS (UPDATE sessions SET expires_at = CASE WHEN o.retention_days "
      "IS NULL THEN NULL ELSE sessions.created_at "
      "+ make_interval(days => o.retention_days) END "
      "FROM o WHERE $4::boolean AND sessions.org_id = o.id RETURNING 1) "
      "SELECT (SELECT row_to_json(x) FROM (SELECT o.id AS org_id, "
      "o.retention_days, (SELECT count(*) FROM s) AS sessions_updated) x) "
      "FROM o",
      4 },

    /* $1 the key's SHA-256 as hex: its organization, if it is valid */
    { "chathistory_apikey_lookup",
      "SELECT org_id FROM api_keys WHERE key_hash = decode($1::text, 'hex') "
      "AND revoked_at IS NULL",
      1 },

    /* $1 the key's SHA-256 as hex: note its use, at most once a minute */
    { "chathistory_apikey_touch",
      "UPDATE api_keys SET last_used_at = now() "
      "WHERE key_hash = decode($1::text, 'hex') AND (last_used_at IS NULL "
      "OR last_used_at < now() - interval '1 minute')",
      1 },

    /*
     * the job queue for chathistory_status: each state read through its
     * own partial index; the lag is the age of the oldest due job
     */
    { "chathistory_status_jobs",
      "SELECT kind, 'queued', count(*), COALESCE(EXTRACT(epoch FROM now() "
      "- min(run_at) FILTER (WHERE run_at <= now())), 0)::float8 "
      "FROM jobs WHERE status = 'queued' GROUP BY kind "
      "UNION ALL SELECT kind, 'running', count(*), 0 "
      "FROM jobs WHERE status = 'running' GROUP BY kind "
      "UNION ALL SELECT kind, 'failed', count(*), 0 "
      "FROM jobs WHERE status = 'failed' GROUP BY kind "
      "ORDER BY 1, 2",
      0 },

    /* readiness: a round trip, and the schema is there */
    { "chathistory_health",
      "SELECT 1 FROM sessions LIMIT 0",
      0 },
    /*
     * chathistory_rate_limit_zone: add what a host admitted to the
     * window's rows (keys in order, so that two hosts lock them in the
     * same order) and read back the totals of all hosts, with those of
     * the window's busiest keys this host did not send. A few expired rows
     * go on the way, skipping those another host deletes.
     */
    { "chathistory_rate_limit_sync",
      "WITH gone AS (DELETE FROM rate_limits WHERE (zone, window_id, key) "
      "IN (SELECT zone, window_id, key FROM rate_limits "
      "WHERE expires_at < now() LIMIT 100 FOR UPDATE SKIP LOCKED)), "
      "up AS (INSERT INTO rate_limits AS c (zone, window_id, key, n, "
      "expires_at) "
      "SELECT $1::text, $2::bigint, u.k, u.d, "
      "to_timestamp(($2::bigint + 2) * $5::bigint / 1000.0) "
      "FROM unnest($3::text[], $4::bigint[]) AS u(k, d) ORDER BY u.k "
      "ON CONFLICT (zone, window_id, key) DO UPDATE SET n = c.n + EXCLUDED.n "
      "RETURNING c.key, c.n) "
      "SELECT key, n FROM up UNION ALL "
      "(SELECT key, n FROM rate_limits WHERE zone = $1::text "
      "AND window_id = $2::bigint AND key <> ALL ($3::text[]) "
      "ORDER BY n DESC LIMIT 512)",
      5 },
    /*
     * how far a replica is behind, in ms: 0 on a primary (a promoted
     * standby) and on a standby that has replayed all it received while
     * it streams; else the age of the last transaction it replayed, which
     * grows while it is cut off from its primary
     */
    { "chathistory_replica_lag",
      "SELECT CASE WHEN NOT pg_is_in_recovery() THEN 0 "
      "WHEN EXISTS (SELECT 1 FROM pg_stat_wal_receiver) "
      "AND pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 "
      "ELSE (LEAST(GREATEST(COALESCE(EXTRACT(epoch FROM now() "
      "- pg_last_xact_replay_timestamp())::float8, 1e6), 0), 1e6) * 1000) "
      "END::bigint",
      0 },
};


const ngx_http_chathistory_statement_t *
ngx_http_chathistory_statement(ngx_uint_t id)
{
    return &ngx_http_chathistory_sql[id];
}


/* the table and the enumeration must not drift apart */
typedef char ngx_http_chathistory_sql_complete[
    sizeof(ngx_http_chathistory_sql) / sizeof(ngx_http_chathistory_sql[0])
    == NGX_HTTP_CHATHISTORY_SQL_COUNT ? 1 : -1];
