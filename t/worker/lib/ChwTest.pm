package ChwTest;

# What the worker's suites share: a throwaway database per suite (created
# next to TEST_NGINX_DATABASE_URL and migrated by the worker), SQL through
# psql, fixtures, the worker run in the foreground or the background, and the
# fake embedding server of t/fake. Every wait is bounded; every child is
# killed when the suite ends.

use strict;
use warnings;

use Cwd qw(abs_path);
use Exporter 'import';
use File::Basename qw(dirname);
use File::Temp ();
use POSIX ();
use Test::More;
use Time::HiRes qw(sleep time);
use lib dirname(__FILE__) . '/../../lib';
use Chathistory::Helpers qw(psql_rows wait_until slurp);

our @EXPORT = qw(setup_db sql worker worker_bg wait_exit stop fake_server
                 make_messages wait_until tmpdir slurp $WORKER $DB_URL);

my $root = abs_path(dirname(__FILE__) . '/../../..');

our $WORKER = $ENV{CHATHISTORY_WORKER} // "$root/build/chathistory-worker";
our $DB_URL;

my $base_url = $ENV{TEST_NGINX_DATABASE_URL};
my ($db_name, @children);

$ENV{CHATHISTORY_MIGRATIONS_DIR} //= "$root/migrations";
delete $ENV{$_} for grep { /^CHATHISTORY_(?!MIGRATIONS_DIR)/ } keys %ENV;

# A fresh, migrated database for this suite; the test is skipped without one.
sub setup_db {
    plan skip_all => 'TEST_NGINX_DATABASE_URL is not set' unless $base_url;
    plan skip_all => "no worker at $WORKER" unless -x $WORKER;

    (my $suite = $0) =~ s{.*/|\.t$}{}g;
    $db_name = "chw_test_${suite}_$$";
    psql_rows($base_url, "CREATE DATABASE $db_name");

    $DB_URL = $base_url =~ m{^postgres(?:ql)?://}
        ? ($base_url =~ s{^(postgres(?:ql)?://[^/?]*)(/[^?]*)?}{$1/$db_name}r)
        : "$base_url dbname=$db_name";

    my ($rc, $out) = worker('migrate');
    die "migrate failed: $out" if $rc != 0;

    return $DB_URL;
}

# so that END cleans up after a kill, a closed pipe or ^C too
$SIG{$_} = sub { exit 1 } for qw(TERM INT HUP PIPE);

END {
    my $status = $?;
    kill 'KILL', $_ for @children;
    waitpid $_, 0 for @children;
    psql_rows($base_url, "DROP DATABASE IF EXISTS $db_name WITH (FORCE)")
        if $db_name && !$ENV{CHW_TEST_KEEP_DB};
    $? = $status;
}

# the rows of the last statement, columns split on "|"; in scalar context
# the first column of the first row
sub sql {
    my @rows = psql_rows($DB_URL, $_[0]);
    return wantarray ? @rows : (@rows ? $rows[0][0] : undef);
}

# runs the worker to the end (at most 60 s): (exit status, stderr, stdout)
sub worker {
    my (@args) = @_;
    my $opts = ref $args[0] eq 'HASH' ? shift @args : {};
    my $err = File::Temp->new;
    my $out = File::Temp->new;
    my $pid = spawn($opts, \@args, $err->filename, $out->filename);
    my $rc = wait_exit($pid, $opts->{timeout} // 60);
    return ($rc, slurp($err->filename), slurp($out->filename));
}

# starts the worker; returns its pid, stderr goes to $log
sub worker_bg {
    my ($opts, $log, @args) = @_;
    my $pid = spawn($opts, \@args, $log, '/dev/null');
    push @children, $pid;
    return $pid;
}

sub spawn {
    my ($opts, $args, $err, $out) = @_;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        $ENV{$_} = $opts->{env}{$_} for keys %{$opts->{env} // {}};
        open STDOUT, '>', $out or POSIX::_exit(127);
        open STDERR, '>>', $err or POSIX::_exit(127);
        { no warnings 'exec'; exec $WORKER, '--database-url', $DB_URL, @$args; }
        POSIX::_exit(127);
    }
    return $pid;
}

# the exit status, or undef (and the child killed) after $timeout seconds
sub wait_exit {
    my ($pid, $timeout) = @_;
    my $end = time + $timeout;
    while (time < $end) {
        my $r = waitpid $pid, POSIX::WNOHANG();
        if ($r == $pid) {
            @children = grep { $_ != $pid } @children;
            return POSIX::WIFEXITED($?) ? POSIX::WEXITSTATUS($?)
                                        : 128 + POSIX::WTERMSIG($?);
        }
        sleep 0.05;
    }
    kill 'KILL', $pid;
    waitpid $pid, 0;
    @children = grep { $_ != $pid } @children;
    diag "worker $pid killed after $timeout s";
    return undef;
}

sub stop {
    my ($pid, $sig) = @_;
    kill $sig // 'TERM', $pid;
    return wait_exit($pid, 30);
}

# starts t/fake/embed-server.pl; returns (base URL, request log file)
sub fake_server {
    my (@args) = @_;
    my $dir = tmpdir();
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        no warnings 'exec';
        exec $^X, "$root/t/fake/embed-server.pl", '--port-file',
            "$dir/port", '--log', "$dir/requests", @args;
        POSIX::_exit(127);
    }
    push @children, $pid;
    wait_until(10, sub { -s "$dir/port" }) or die "fake server did not start";
    chomp(my $port = slurp("$dir/port"));
    return ("http://127.0.0.1:$port", "$dir/requests", $pid);
}

# a session of the default organization with $n messages and their jobs;
# returns the session id
sub make_messages {
    my ($n, %o) = @_;
    my $text = $o{text} // 'hello world';
    my $expires = $o{expires} // 'NULL';
    my $session = sql("INSERT INTO sessions (org_id, source_lang, target_lang,"
        . " expires_at) SELECT id, 'en', 'es', $expires FROM organizations"
        . " WHERE name = 'default' RETURNING id");
    return $session if $n == 0;
    my $model = $o{model} ? "'$o{model}'" : 'NULL';
    my $jobs = $o{no_jobs} ? 'SELECT 1 FROM m'
        : "INSERT INTO jobs (kind, payload) SELECT 'embed_message',"
          . " jsonb_build_object('message_id', id) FROM m";
    sql("WITH m AS (INSERT INTO messages (session_id, org_id, source_lang,"
        . " target_lang, source_text, translated_text, embedding_model)"
        . " SELECT '$session', org_id, 'en', 'es', '$text ' || g,"
        . " 'hola mundo ' || g, $model FROM sessions, generate_series(1, $n) g"
        . " WHERE id = '$session' RETURNING id) $jobs");
    return $session;
}

my @keep;

# a temporary directory that lives as long as the suite
sub tmpdir {
    my $d = File::Temp->newdir('chw-test-XXXXXX', TMPDIR => 1);
    push @keep, $d;
    return $d->dirname;
}

1;
