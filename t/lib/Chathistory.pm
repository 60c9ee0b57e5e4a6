package Chathistory;

# What the suites share: the default configuration of a block, SQL
# fixtures through psql, and a small control server that stops and starts
# the test database when nginx asks it to, so a single block can take the
# database away from a running nginx and give it back.

use strict;
use warnings;

use Exporter 'import';
use File::Basename qw(dirname);
use HTTP::Tiny;
use IO::Socket::INET;
use POSIX ();
use File::Temp ();
use MIME::Base64 qw(encode_base64url);
use lib dirname(__FILE__);
use Chathistory::Helpers qw(psql_rows free_port read_pid $ROOT);

our @EXPORT = qw(chathistory_block sql db_control_start session_cursor
                 pgbouncer_start sql_eventually metrics_eventually metric
                 error_like request_id_like);

# The environment the suites run in (t/README.md): what scripts/test sets,
# with the defaults a run of prove from the repository gets without it.
my $db_url = $ENV{TEST_NGINX_DATABASE_URL}
    or die "TEST_NGINX_DATABASE_URL is not set: it must name a migrated database"
           . " (t/README.md, or run the suites with scripts/test)\n";

if (!$ENV{TEST_NGINX_LOAD_MODULES}) {
    my $so = "$ROOT/build/nginx/objs/ngx_http_chathistory_module.so";
    -f $so or die "TEST_NGINX_LOAD_MODULES is not set and there is no $so:"
                  . " run make, or set it to the module's .so (t/README.md)\n";
    $ENV{TEST_NGINX_LOAD_MODULES} = $so;
    # test-nginx read the variable when it was loaded, before this file
    no warnings 'once';
    $Test::Nginx::Util::LoadModules = $so;
}
$ENV{CHATHISTORY_WORKER} ||= "$ROOT/build/chathistory-worker";
$ENV{CHATHISTORY_MIGRATIONS_DIR} ||= "$ROOT/migrations";

# test-nginx before 0.31 starts nginx without "-e logs/error.log": what nginx
# logs before it has read its configuration, and its configuration errors
# (the --- must_die blocks check them), would go to the binary's compiled-in
# error log (Debian: /var/log/nginx/error.log), not the servroot's. Start it
# through t/lib/nginx-e, which adds the option as 0.31 does.
{
    no warnings 'once';
    my $version = $Test::Nginx::Util::VERSION // '';
    if ($version =~ /^(\d+\.\d+)$/ && $1 < 0.31
        && $Test::Nginx::Util::NginxBinary !~ m{/t/lib/nginx-e$})
    {
        $ENV{CHATHISTORY_NGINX} = $Test::Nginx::Util::NginxBinary;
        $Test::Nginx::Util::NginxBinary = "$ROOT/t/lib/nginx-e";
    }
}

# The rules every block of every suite keeps, whichever runner runs it. This
# preprocessor is added when the suite loads this file, before the suite adds
# its own, so it runs after them (test-nginx runs the last added first):
#
# - a block that stops or starts the database (POST /db/stop, /db/start, or
#   TEST_NGINX_PG_STOP/_START in its code) is skipped, with the reason, when
#   the command it needs is not set;
# - a no_error_log with "[error]" also lists "[crit]", "[alert]" and
#   "[emerg]" (as t/runner reads "[error]": that or worse), and every
#   block's no_error_log lists "exited on signal" (a crashed worker).
sub house_rules {
    my $block = shift;
    return if defined $block->must_die;

    my $text = join "\n", flat(map { scalar eval { $block->$_ } }
                               qw(request init pipelined_requests raw_request));
    for my $cmd ('STOP', 'START') {
        next if $ENV{"TEST_NGINX_PG_$cmd"};
        if ($text =~ m{/db/\L$cmd\E\b|TEST_NGINX_PG_$cmd}) {
            skip_block($block, "TEST_NGINX_PG_$cmd is not set: the command that"
                               . " stops or starts the test database (t/README.md)");
            return;
        }
    }

    my $no = $block->no_error_log;
    my @pats = !defined $no        ? ()
             : ref $no eq 'ARRAY'  ? @$no
             : ref $no             ? ($no)
             : grep { length } map { s/\s+\z//r } split /\n/, $no;
    my %have = map { ref $_ ? () : ($_ => 1) } @pats;
    my @add = $have{'[error]'} ? grep { !$have{$_} } '[crit]', '[alert]', '[emerg]' : ();
    push @add, 'exited on signal' unless $have{'exited on signal'};
    $block->set_value("no_error_log", [@pats, @add]) if @add;
}

# Skips a block with a reason, in both runners: a skip_nginx that always holds.
# test-nginx runs a skipped block's --- init all the same: it goes too.
sub skip_block {
    my ($block, $reason) = @_;
    $block->set_value("skip_nginx", "1: > 0.0.0: $reason");
    $block->set_value("init", "");
}

sub flat {
    return map { ref $_ eq 'ARRAY' ? flat(@$_) : defined $_ && !ref $_ ? $_ : () } @_;
}

Test::Nginx::Util::add_block_preprocessor(\&house_rules)
    if defined &Test::Nginx::Util::add_block_preprocessor;

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
    my @rows = psql_rows($db_url, $statement);
    return wantarray ? @rows : (@rows ? $rows[0][0] : undef);
}

# Poll a query until its first value is the expected one, for at most
# $seconds: recording happens after the answer has gone to the client.
sub sql_eventually {
    my ($statement, $expected, $seconds) = @_;
    my $value;
    for (1 .. ($seconds // 5) * 20) {
        $value = sql($statement);
        return $value if defined $value && $value eq $expected;
        select undef, undef, undef, 0.05;
    }
    return $value;
}

# The text of the running nginx's /metrics (a chathistory_status location),
# polled for at most 5 s until the sample $name reads $expected: counters
# move after the answer has gone to the client.
sub metrics_eventually {
    my ($port, $name, $expected) = @_;
    my $metrics = '';
    for (1 .. 50) {
        $metrics = HTTP::Tiny->new->get("http://127.0.0.1:$port/metrics")->{content} // '';
        last if (metric($metrics, $name) // '') eq $expected;
        select undef, undef, undef, 0.1;
    }
    return $metrics;
}

# A sample's value in a /metrics text; undef when it is not there.
sub metric {
    my ($metrics, $name) = @_;
    return $metrics =~ /^\Q$name\E (\d+)$/m ? $1 : undef;
}

# The cursor the API gives for a row: base64url of "v1.<micros>.<uuid>".
sub session_cursor {
    my ($id) = @_;
    my $micros = sql("SELECT (extract(epoch FROM created_at) * 1000000)"
                     . "::bigint FROM sessions WHERE id = '$id'");
    return encode_base64url("v1.$micros.$id");
}

# Listen on a free loopback port and do to the test database what a
# request asks: POST /stop, /start (TEST_NGINX_PG_STOP, TEST_NGINX_PG_START),
# /lock (hold an exclusive lock on sessions until /unlock), /terminate
# (end nginx's backends), /abandon (send the request in the body to the
# nginx port in X-Nginx-Port and hang up after 300 ms). Returns the port;
# the server ends with the test file.
sub db_control_start {
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

    my $locker;

    # the child serves a bounded number of requests, then leaves
    for (1 .. 1000) {
        my $client = $server->accept or next;
        my ($line, %h) = (scalar(<$client>) // '');
        while (my $l = <$client>) {
            last if $l =~ /^\r?\n$/;
            $h{lc $1} = $2 if $l =~ /^([^:]+):\s*(.*?)\r?$/;
        }
        my $body = '';
        read $client, $body, $h{'content-length'} if $h{'content-length'};

        my ($cmd) = $line =~ m{^POST /(\w+)};
        my $said;
        my $ok = eval { $said = db_control($cmd // '', \$locker, $body, \%h); 1 };
        my ($status, $out) = !$ok ? (500, "$cmd: $@")
                           : (200, ref $said ? $$said : "$cmd ok\n");

        print $client "HTTP/1.1 $status X\r\nContent-Length: "
                      . length($out) . "\r\nConnection: close\r\n\r\n$out";
        close $client;
    }

    POSIX::_exit(0);
}

# Start PgBouncer in transaction mode, one server connection, in front of
# the test database; returns its URL. It stops with the test file.
sub pgbouncer_start {
    my ($user, $host, $port, $db) =
        $db_url =~ m{^postgres(?:ql)?://([^@/]+)@([^:/]+):(\d+)/([^?]+)}
        or die "cannot read $db_url\n";

    my $dir = File::Temp::tempdir(CLEANUP => 1);
    my $listen = free_port();
    my $as_root = $> == 0;

    open my $ini, ">", "$dir/pgbouncer.ini" or die "$!";
    print $ini <<"INI";
[databases]
$db = host=$host port=$port dbname=$db
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $listen
unix_socket_dir =
auth_type = trust
auth_file = $dir/users.txt
pool_mode = transaction
application_name_add_host = 1
default_pool_size = 1
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
INI
    close $ini;

    open my $users, ">", "$dir/users.txt" or die "$!";
    print $users qq("$user" ""\n);
    close $users;

    if ($as_root) {
        my $uid = getpwnam('postgres') // die "no postgres user\n";
        chown $uid, -1, $dir, "$dir/pgbouncer.ini", "$dir/users.txt";
    }

    my @run = ($as_root ? ("runuser", "-u", "postgres", "--") : (),
               "pgbouncer", "-d", "$dir/pgbouncer.ini");
    system(@run) == 0 or Test::More::BAIL_OUT("cannot start pgbouncer");

    # the daemon writes its pid file and opens its port in an order of
    # its own, after the command has returned: wait for both
    my $pid;
    for (1 .. 200) {
        $pid = read_pid("$dir/pgbouncer.pid");
        last if $pid && IO::Socket::INET->new(PeerAddr => "127.0.0.1:$listen");
        undef $pid;
        select undef, undef, undef, 0.05;
    }

    # (a die would only become the section's text, in Test::Base's eval)
    $pid or Test::More::BAIL_OUT("pgbouncer did not start within 10 s");

    # its pid now: the temporary directory may be gone by the END blocks
    my $parent = $$;
    eval "END { local \$?; kill 'TERM', $pid if \$\$ == $parent }";

    return "postgresql://$user\@127.0.0.1:$listen/$db";
}

sub db_control {
    my ($cmd, $locker, $body, $h) = @_;

    if ($cmd eq 'stop' || $cmd eq 'start') {
        my $run = $ENV{$cmd eq 'stop' ? 'TEST_NGINX_PG_STOP' : 'TEST_NGINX_PG_START'}
            or die "TEST_NGINX_PG_\U$cmd\E is not set\n";
        system($run) == 0 or die "failed\n";

    } elsif ($cmd eq 'lock') {
        $$locker = fork // die "cannot fork\n";
        if ($$locker == 0) {
            $ENV{PGAPPNAME} = 'chathistory test lock';
            open STDERR, ">", "/dev/null";
            exec "psql", $db_url, "-X", "-q", "-c",
                 "BEGIN; LOCK TABLE sessions IN ACCESS EXCLUSIVE MODE;"
                 . " SELECT pg_sleep(30); COMMIT";
        }
        for (1 .. 100) {
            return if sql("SELECT count(*) FROM pg_locks l JOIN pg_class c"
                          . " ON c.oid = l.relation WHERE c.relname = 'sessions'"
                          . " AND l.mode = 'AccessExclusiveLock' AND l.granted");
            select undef, undef, undef, 0.05;
        }
        die "no lock\n";

    } elsif ($cmd eq 'unlock') {
        sql("SELECT pg_cancel_backend(pid) FROM pg_stat_activity"
            . " WHERE application_name = 'chathistory test lock'");
        waitpid $$locker, 0 if $$locker;

    } elsif ($cmd eq 'backends') {
        select undef, undef, undef, 0.3;
        my $n = sql("SELECT count(*) FROM pg_stat_activity"
                    . " WHERE application_name = 'nginx chathistory'");
        return \"backends $n\n";

    } elsif ($cmd eq 'terminate') {
        # PgBouncer's server connections carry the name and a host
        sql("SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
            . " WHERE application_name LIKE 'nginx chathistory%'");

    } elsif ($cmd eq 'abandon') {
        my $nginx = IO::Socket::INET->new(PeerAddr => "127.0.0.1",
                                          PeerPort => $h->{'x-nginx-port'})
            or die "cannot reach nginx\n";
        print $nginx $body;
        select undef, undef, undef, 0.3;
        close $nginx;

    } else {
        die "no such command\n";
    }

    return;
}

# The pattern of a body that is exactly $text but for "__REQUEST_ID__",
# where nginx's $request_id (32 hex digits) stands; the final newline may
# be there or not.
sub request_id_like {
    my ($text) = @_;
    my $re = join '[0-9a-f]{32}', map { quotemeta } split /__REQUEST_ID__/, $text, -1;
    $re =~ s/\\\n\z//;
    return qr/^$re\n?\z/;
}

# The pattern of the module's JSON error with this code and message (as
# the JSON has it, escapes and all), whatever the request's id.
sub error_like {
    my ($code, $message) = @_;
    return request_id_like(qq({"error":{"code":"$code","message":"$message",)
                           . qq("request_id":"__REQUEST_ID__"}}));
}

1;
