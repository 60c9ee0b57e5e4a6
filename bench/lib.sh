# shellcheck shell=bash disable=SC2034
# Helpers shared by the benchmarks in this directory; sourced, never run. Each benchmark
# calls, in this order: bench_tmp (temporary directory and the cleanup trap), bench_pg DB
# [-c name=value ...] (throwaway cluster, migrated database), writes $NGXDIR/nginx.conf
# (nginx_main_conf and nginx_http_common print the parts they all share), then
# bench_nginx URL; then measures with run_wrk and summarizes with median and spread.
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

NGINX="${NGINX:-/usr/sbin/nginx}"
MODULE="$ROOT/build/nginx/objs/ngx_http_chathistory_module.so"
WORKER="$ROOT/build/chathistory-worker"

# need_ints VAR...: each variable holds a positive integer
need_ints() {
    local v
    for v in "$@"; do
        [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got \"${!v}\")"
    done
}

# need_tools CMD...: nginx, the built module and each command
need_tools() {
    local c
    [[ -x "$NGINX" ]] || die "missing: $NGINX"
    for c in "$@"; do
        command -v "$c" >/dev/null || die "missing: $c"
    done
    [[ -f "$MODULE" ]] || die "$MODULE not built (run make)"
}

# bench_tmp: TMP (with PGDIR and NGXDIR in it) and the trap that stops and removes it all
bench_tmp() {
    TMP="$(mktemp -d -t chathistory-bench.XXXXXX)"
    # the postgres user (when root) and nginx's workers must get into it
    chmod 755 "$TMP"
    PGDIR="$TMP/pg"
    NGXDIR="$TMP/nginx"
    mkdir -p "$NGXDIR/tmp"
    trap bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

bench_cleanup() {
    local pid
    trap - EXIT INT TERM
    if [[ -f "$NGXDIR/nginx.pid" ]]; then
        pid="$(cat "$NGXDIR/nginx.pid" 2>/dev/null || true)"
        if [[ -n "$pid" ]] && kill -TERM "$pid" 2>/dev/null; then
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        fi
    fi
    "$ROOT/scripts/pg" stop "$PGDIR" >/dev/null 2>&1 || true
    if [[ "${KEEP_TMP:-0}" == 1 ]]; then
        echo "kept $TMP" >&2
    else
        rm -rf "$TMP"
    fi
}

# bench_pg DB [-c name=value ...]: a cluster in $PGDIR on a free port, started with the
# options, database DB created and migrated; sets PGPORT, DB, DATABASE_URL
bench_pg() {
    local f
    DB="$1"
    shift
    PGPORT="$(free_port)"
    "$ROOT/scripts/pg" init "$PGDIR" "$PGPORT" >/dev/null
    "$ROOT/scripts/pg" start "$PGDIR" "$@" >/dev/null
    "$ROOT/scripts/pg" createdb "$PGDIR" "$DB"
    DATABASE_URL="$("$ROOT/scripts/pg" url "$PGDIR" "$DB")"
    if [[ -x "$WORKER" ]]; then
        quietly "$WORKER" migrate --database-url "$DATABASE_URL" \
            --migrations-dir "$ROOT/migrations"
    else
        warn "$WORKER not built: applying migrations/*.sql with psql"
        for f in "$ROOT"/migrations/*.sql; do quietly psql_ -f "$f"; done
    fi
}

psql_() { "$ROOT/scripts/pg" psql "$PGDIR" -d "$DB" -tA "$@"; }

# nginx_main_conf WORKERS: the configuration's top (module, workers, logs, events)
nginx_main_conf() {
    cat <<EOF
load_module $MODULE;
worker_processes $1;
error_log $NGXDIR/error.log warn;
pid $NGXDIR/nginx.pid;
events {
    worker_connections 1024;
}
EOF
}

# nginx_http_common: the lines every benchmark's http block starts with
nginx_http_common() {
    cat <<EOF
    access_log off;
    # wrk keeps its connections; do not make it reconnect every 1000 requests
    keepalive_requests 1000000;
    client_body_temp_path $NGXDIR/tmp/client_body;
    proxy_temp_path       $NGXDIR/tmp/proxy;
    fastcgi_temp_path     $NGXDIR/tmp/fastcgi;
    uwsgi_temp_path       $NGXDIR/tmp/uwsgi;
    scgi_temp_path        $NGXDIR/tmp/scgi;
EOF
}

# bench_nginx URL: starts nginx with $NGXDIR/nginx.conf, waits until URL answers 2xx
bench_nginx() {
    "$NGINX" -p "$NGXDIR" -c "$NGXDIR/nginx.conf" -e "$NGXDIR/error.log" \
        || die "nginx did not start (log: $NGXDIR/error.log)"
    for _ in $(seq 50); do
        curl -fsS -o /dev/null "$1" 2>/dev/null && return
        sleep 0.1
    done
    die "nginx does not answer $1 (log: $NGXDIR/error.log)"
}

# to_ms VALUE-WITH-UNIT (wrk: 850.00us, 1.23ms, 1.01s)
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
        printf "%.3f", n }'
}

# run_wrk URL SECONDS (WRK_SCRIPT: a wrk -s Lua script, if set): prints "req/s p99_ms requests non2xx socket_errors" (one line; on
# failure, nothing: the caller checks, since die here would only end a subshell)
run_wrk() {
    local out rps p99 reqs non2xx sockerr
    local script=()
    [[ -n "${WRK_SCRIPT:-}" ]] && script=(-s "$WRK_SCRIPT")
    out="$(wrk -t "${WRK_THREADS:-1}" -c "$CONNS" -d "${2}s" --latency "${script[@]}" "$1")" || {
        warn "wrk failed: $out"
        return 1
    }
    rps="$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")"
    p99="$(awk '$1 == "99%" {print $2}' <<<"$out")"
    reqs="$(awk '/ requests in / {print $1}' <<<"$out")"
    if [[ -z "$rps" || -z "$p99" || -z "$reqs" ]]; then
        warn "cannot parse wrk output: $out"
        return 1
    fi
    non2xx="$(awk '/Non-2xx or 3xx responses:/ {print $NF}' <<<"$out")"
    # Socket errors: connect 0, read 0, write 0, timeout 0
    sockerr="$(awk -F'[ ,]+' '/Socket errors:/ {print $5 + $7 + $9 + $11}' <<<"$out")"
    [[ -z "$non2xx$sockerr" ]] || warn "wrk $1: $(grep -E 'Non-2xx|Socket errors' <<<"$out" | xargs)"
    echo "$rps $(to_ms "$p99") $reqs ${non2xx:-0} ${sockerr:-0}"
}

# median "N N N ..." and spread "N N N ..." (min-max, integers)
median() { tr ' ' '\n' <<<"$1" | grep . | sort -g \
    | awk '{a[NR] = $1} END { m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
                             printf "%.3f", m }'; }
spread() { tr ' ' '\n' <<<"$1" | grep . | sort -g \
    | awk 'NR == 1 {lo = $1} {hi = $1} END {printf "%.0f-%.0f", lo, hi}'; }

# nginx_log_report: the count of warn-or-worse lines in nginx's error.log, and the last ones
nginx_log_report() {
    local nerr
    nerr="$(grep -cE '\[(warn|error|crit|alert|emerg)\]' "$NGXDIR/error.log" || true)"
    if [[ "$nerr" -gt 0 ]]; then
        echo "nginx error.log: $nerr warn/error lines, the last ones:"
        grep -E '\[(warn|error|crit|alert|emerg)\]' "$NGXDIR/error.log" | tail -n "${1:-3}"
    else
        echo "nginx error.log: no warn/error lines"
    fi
}
