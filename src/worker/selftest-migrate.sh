#!/usr/bin/env bash
# Self-test of `chathistory-worker migrate` against an empty database.
#
#   CHATHISTORY_DATABASE_URL=postgresql://... src/worker/selftest-migrate.sh
#
# CHATHISTORY_WORKER (default build/chathistory-worker) and CHATHISTORY_MIGRATIONS_DIR
# (default migrations/) may point elsewhere. The database is changed, and its public
# schema dropped and recreated between the cases: give it a throwaway one. Checks that a
# first run applies every migration and a second none, that the schema is there with the
# default organization, and that migrators started together take turns on the advisory
# lock and all succeed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WORKER="${CHATHISTORY_WORKER:-$ROOT/build/chathistory-worker}"
export CHATHISTORY_MIGRATIONS_DIR="${CHATHISTORY_MIGRATIONS_DIR:-$ROOT/migrations}"
: "${CHATHISTORY_DATABASE_URL:?set CHATHISTORY_DATABASE_URL to an empty database}"
export CHATHISTORY_DATABASE_URL

# CHW_LOCK_MIGRATE in chathistory_worker.h
LOCK_KEY=7163082359928875367

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

failures=0
ok()   { printf 'ok - %s\n' "$*"; }
fail() { printf 'not ok - %s\n' "$*"; failures=$((failures + 1)); }
check() {
    local what="$1"
    shift
    if "$@"; then ok "$what"; else fail "$what"; fi
}

sql() { psql "$CHATHISTORY_DATABASE_URL" -X -q -A -t -v ON_ERROR_STOP=1 -c "$1"; }

# applied LOG: the applied= count of the summary line
applied() { grep -o ' applied=[0-9]*' "$1" | tail -n 1 | cut -d= -f2; }

# count FROM-CLAUSE: how many rows
count() { sql "SELECT count(*) FROM $1"; }

nothing_pending() { ! "$WORKER" migrate --status 2>/dev/null | grep -q pending; }

reset_schema() {
    PGOPTIONS="-c client_min_messages=warning" \
        sql "DROP SCHEMA public CASCADE; CREATE SCHEMA public;
             DROP EXTENSION IF EXISTS vector"
}

[[ -x "$WORKER" ]] || { echo "error: $WORKER is not built (make worker)" >&2; exit 1; }
total="$(find "$CHATHISTORY_MIGRATIONS_DIR" -maxdepth 1 \
            -name '[0-9][0-9][0-9][0-9]_*.sql' | wc -l)"
[[ "$total" -gt 0 ]] \
    || { echo "error: no migrations in $CHATHISTORY_MIGRATIONS_DIR" >&2; exit 1; }
[[ -z "$(sql "SELECT to_regclass('public.schema_migrations')")" ]] \
    || { echo "error: the database is not empty" >&2; exit 1; }

# 1. first run applies everything, second nothing
check "first migrate succeeds" "$WORKER" migrate 2>"$TMP/first.log"
check "first migrate applies all $total" test "$(applied "$TMP/first.log")" = "$total"
check "second migrate succeeds" "$WORKER" migrate 2>"$TMP/second.log"
check "second migrate applies nothing" test "$(applied "$TMP/second.log")" = 0
check "second migrate says so" grep -q 'database is up to date' "$TMP/second.log"
check "migrate --status shows nothing pending" nothing_pending

# 2. the schema
for table in schema_migrations organizations api_keys sessions messages jobs; do
    check "table $table exists" \
        test "$(sql "SELECT to_regclass('public.$table') IS NOT NULL")" = t
done
check "schema_migrations has $total rows" \
    test "$(count schema_migrations)" = "$total"
check "the default organization exists" \
    test "$(count "organizations WHERE name = 'default'")" = 1
check "the vector extension is installed" \
    test "$(count "pg_extension WHERE extname = 'vector'")" = 1
check "messages.embedding is vector(768)" \
    test "$(sql "SELECT format_type(atttypid, atttypmod) FROM pg_attribute
                 WHERE attrelid = 'messages'::regclass
                   AND attname = 'embedding'")" = "vector(768)"
check "chathistory_uuidv7() gives version 7, RFC 9562 variant" \
    test "$(sql "SELECT chathistory_uuidv7()::text
                 ~ '^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab]'")" = t
check "a session and a message can be stored" sql "
    WITH s AS (INSERT INTO sessions (org_id, source_lang, target_lang)
               SELECT id, 'en', 'es' FROM organizations WHERE name = 'default'
               RETURNING id, org_id)
    INSERT INTO messages (session_id, org_id, source_lang, target_lang, embedding)
    SELECT id, org_id, 'en', 'es', array_fill(0.1, ARRAY[768])::vector
      FROM s"
check "a job can be queued" sql "INSERT INTO jobs (kind, payload) VALUES ('selftest', '{}')"

# 3. concurrent migrators on a fresh schema: with the lock held elsewhere all of them
# must wait, then each succeeds, and exactly one applies the migrations
reset_schema
psql "$CHATHISTORY_DATABASE_URL" -X -q -c "SELECT pg_advisory_lock($LOCK_KEY)" \
    -c "SELECT pg_sleep(2)" >/dev/null &
holder=$!
for _ in $(seq 50); do
    [[ "$(count "pg_locks WHERE locktype = 'advisory' AND granted")" -gt 0 ]] && break
    sleep 0.1
done
pids=()
for i in 1 2 3; do
    "$WORKER" migrate 2>"$TMP/concurrent$i.log" &
    pids+=($!)
done
for i in 1 2 3; do
    check "concurrent migrate $i succeeds" wait "${pids[$((i - 1))]}"
    check "concurrent migrate $i waited for the lock" \
        grep -q 'waiting for another migrator' "$TMP/concurrent$i.log"
done
wait "$holder"
counts="$(for i in 1 2 3; do applied "$TMP/concurrent$i.log"; done \
          | sort -n | tr '\n' ' ')"
check "one concurrent migrate applied all, the others none ($counts)" \
    test "$counts" = "0 0 $total "
check "schema_migrations has $total rows after the concurrent runs" \
    test "$(count schema_migrations)" = "$total"

# and started together, without anyone holding the lock first
reset_schema
for i in 1 2; do
    "$WORKER" migrate 2>"$TMP/race$i.log" &
    pids[i]=$!
done
for i in 1 2; do
    check "racing migrate $i succeeds" wait "${pids[$i]}"
done
check "the default organization exists once after the race" \
    test "$(count "organizations WHERE name = 'default'")" = 1

if [[ $failures -ne 0 ]]; then
    for f in "$TMP"/*.log; do printf '# %s\n' "$f"; sed 's/^/#   /' "$f"; done
    echo "$failures check(s) failed" >&2
    exit 1
fi
echo "all checks passed"
