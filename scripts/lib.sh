# shellcheck shell=bash disable=SC2034
# Helpers shared by the scripts in this directory; sourced, never run.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PGBIN="${PGBIN:-/usr/lib/postgresql/15/bin}"

say()  { printf '==> %s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die()  { printf 'error: %s\n' "$*" >&2; exit 1; }

is_root() { [[ "$(id -u)" -eq 0 ]]; }

# Runs a command, showing its output only when it fails.
quietly() {
    local out rc=0
    out="$(mktemp)"
    "$@" >"$out" 2>&1 || rc=$?
    if [[ $rc -ne 0 ]]; then
        cat "$out" >&2
        rm -f "$out"
        printf 'error: command failed (exit %d): %s\n' "$rc" "$*" >&2
        return "$rc"
    fi
    rm -f "$out"
}

# An unused TCP port on 127.0.0.1, chosen by the kernel.
free_port() {
    perl -MIO::Socket::INET -e '
        my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => 0,
                                      Proto => "tcp", Listen => 1, ReuseAddr => 1)
            or die "cannot bind: $!\n";
        print $s->sockport, "\n";'
}

# The Node.js tools of t/openapi.t (the linter and the checker's libraries), installed
# with `npm ci` from t/openapi/package-lock.json unless they already match it.
openapi_tools() {
    local dir="$ROOT/t/openapi" stamp sum
    stamp="$dir/node_modules/.chathistory-lock.sha256"
    command -v npm >/dev/null || { warn "no npm: t/openapi.t will fail (scripts/deps)"; return 0; }
    sum="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$sum" ]]; then
        return 0
    fi
    say "tools: npm ci (t/openapi: the OpenAPI linter and checker)"
    (cd "$dir" && NO_UPDATE_NOTIFIER=1 quietly npm ci --ignore-scripts --no-audit --no-fund \
        --loglevel=error)
    printf '%s\n' "$sum" >"$stamp"
}

# port_free PORT: nothing listens on 127.0.0.1:PORT (a bind succeeds).
port_free() {
    perl -MIO::Socket::INET -e '
        IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => $ARGV[0],
                              Proto => "tcp", Listen => 1, ReuseAddr => 1)
            or exit 1;' "$1"
}

# pidfile_pid FILE WORD: the pid in FILE when that process runs and its command line
# has WORD (a pid reused by another program does not count).
pidfile_pid() {
    local pid
    pid="$(cat "$1" 2>/dev/null)" || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null \
        && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$2" && echo "$pid"
}

# pidfile_stop FILE WORD NAME [SIGNAL]: send the process of FILE SIGNAL (TERM), wait up
# to 30 s for it to exit, remove FILE.
pidfile_stop() {
    local pid
    if ! pid="$(pidfile_pid "$1" "$2")"; then
        rm -f "$1"
        return 0
    fi
    say "$3: stopping (pid $pid)"
    kill -"${4:-TERM}" "$pid"
    for _ in $(seq 300); do
        kill -0 "$pid" 2>/dev/null || { rm -f "$1"; return 0; }
        sleep 0.1
    done
    die "$3 (pid $pid) did not stop within 30 s"
}

# wait_http URL WHAT LOG: until URL answers 2xx, for up to 5 s; else die pointing at LOG.
wait_http() {
    for _ in $(seq 50); do
        curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    die "$2 does not answer $1 (see $3)"
}
