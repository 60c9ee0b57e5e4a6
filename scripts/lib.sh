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
