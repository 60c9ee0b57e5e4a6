package Chathistory;

# What the suites share: the default configuration of a block, SQL
# fixtures through psql, and a small control server that stops and starts
# the test database when nginx asks it to, so a single block can take the
# database away from a running nginx and give it back.

use strict;
use warnings;

use Exporter 'import';
use IO::Socket::INET;
use POSIX ();
use MIME::Base64 qw(encode_base64url);

our @EXPORT = qw(chathistory_block sql db_control_start session_cursor);

my $db_url = $ENV{TEST_NGINX_DATABASE_URL}
    or die "TEST_NGINX_DATABASE_URL is not set: run the suites with scripts/test\n";

# A block without its own configuration gets the API on /api/ and the
# house rule that nothing is logged at [error] or worse.
sub chathistory_block {
    my $block = shift;

    if (!defined $block->http_config) {
        $block->set_value("http_config",
                          "chathistory_database_url \"$db_url\";\n");
    }

    if (!defined $block->config) {
        $block->set_value("config", "location /api/ { chathistory_api; }\n");
    }

    if (!defined $block->no_error_log && !defined $block->error_log) {
        $block->set_value("no_error_log", "[error]\n[crit]\n[alert]\n");
    }
}

# Run SQL; return the rows of its last statement, columns split on "|".
sub sql {
    my ($statement) = @_;

    open my $psql, "-|", "psql", $db_url, "-X", "-q", "-A", "-t",
        "-v", "ON_ERROR_STOP=1", "-c", $statement
        or die "cannot run psql: $!";
    my @rows = map { chomp; [split /\|/, $_, -1] } <$psql>;
    close $psql or die "psql failed on: $statement\n";

    return wantarray ? @rows : (@rows ? $rows[0][0] : undef);
}

# The cursor the API gives for a row: base64url of "v1.<micros>.<uuid>".
sub session_cursor {
    my ($id) = @_;
    my $micros = sql("SELECT (extract(epoch FROM created_at) * 1000000)"
                     . "::bigint FROM sessions WHERE id = '$id'");
    return encode_base64url("v1.$micros.$id");
}

# Listen on a free loopback port; POST /stop and /start run the commands
# in TEST_NGINX_PG_STOP and TEST_NGINX_PG_START. Returns the port; the
# server ends with the test file.
sub db_control_start {
    my $stop = $ENV{TEST_NGINX_PG_STOP} or die "TEST_NGINX_PG_STOP is not set\n";
    my $start = $ENV{TEST_NGINX_PG_START} or die "TEST_NGINX_PG_START is not set\n";

    my $server = IO::Socket::INET->new(LocalAddr => "127.0.0.1",
                                       LocalPort => 0, Listen => 8,
                                       ReuseAddr => 1)
        or die "cannot listen: $!";
    my $port = $server->sockport;
    my $parent = $$;

    my $pid = fork // die "cannot fork: $!";

    if ($pid) {
        close $server;
        $ENV{TEST_NGINX_DB_CONTROL_PORT} = $port;
        # the server's exit status must not become the test file's
        eval "END { local \$?; if (\$\$ == $parent) { kill 'TERM', $pid;"
             . " waitpid $pid, 0 } }";
        return $port;
    }

    # the child serves a bounded number of requests, then leaves
    for (1 .. 1000) {
        my $client = $server->accept or next;
        my $line = <$client> // '';
        while (my $h = <$client>) { last if $h =~ /^\r?\n$/ }

        my ($status, $out) = (404, "no such command\n");
        if ($line =~ m{^POST /(stop|start)\b}) {
            my $rc = system($1 eq 'stop' ? $stop : $start);
            ($status, $out) = $rc == 0 ? (200, "$1 ok\n") : (500, "$1 failed\n");
        }

        print $client "HTTP/1.1 $status X\r\nContent-Length: "
                      . length($out) . "\r\nConnection: close\r\n\r\n$out";
        close $client;
    }

    POSIX::_exit(0);
}

1;
