# A worker gives back the memory of a burst. The database is locked while
# clients send captured requests: the messages pile up in the worker (the
# batch, the spool's queue) and are written once the lock goes. glibc keeps
# what is freed amid the heap resident; the module hands it back to the
# kernel some seconds after it last worked (malloc_trim).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/lib", "$FindBin::Bin/../worker/lib";
use ChwTest qw(setup_db);
use Faults;
use Test::More;
use Time::HiRes qw(sleep);

plan skip_all => 'glibc only: other allocators return memory their own way'
    unless `ldd --version 2>&1` =~ /GNU libc|GLIBC/;
plan skip_all => "the sanitizers' and valgrind's allocators keep freed memory by design"
    if $ENV{ASAN_OPTIONS} || $ENV{TEST_NGINX_USE_VALGRIND};

# a database of its own: thousands of messages the other suites must not see
my $db = setup_db();

sub rss_anon {
    my ($pid) = @_;
    open my $fh, '<', "/proc/$pid/status" or die "/proc/$pid/status: $!";
    while (<$fh>) {
        return $1 if /^RssAnon:\s+(\d+)/;
    }
    die "no RssAnon for $pid\n";
}

my @sessions = new_sessions($db, 20);
my $backend = nginx_start(backend => 1, workers => 1);
my $nginx = nginx_start(db => $db, backend_port => $backend->{port}, workers => 1,
                        http => 'chathistory_spool_max_messages 100000;');
my ($worker) = children(nginx_pid($nginx));
ok($worker, "the worker process");

my $before = rss_anon($worker);

my $locker = lock_messages($db, 6);
ok($locker, "the messages table is locked");

my $text = 'x' x 2000;
my $pick = sub {
    my ($i, $c) = @_;
    my $s = $sessions[($i + $c) % @sessions];
    return { tag => 'pipeline',
             req => "GET /pipeline?session_id=$s&say=$text$c.$i HTTP/1.1\r\n"
                    . "Host: localhost\r\n\r\n" };
};
my $load = load_start(port => $nginx->{port}, clients => 8, seconds => 4,
                      requests => 400, pick => $pick);
my $st = load_wait($load);
my $peak = rss_anon($worker);
my @ids = @{$st->{ids}{pipeline} // []};
ok(@ids >= 1000, "messages captured while the database was locked (" . scalar(@ids) . ")");
ok($peak - $before > 1024, "the worker's memory grew meanwhile (+"
                           . ($peak - $before) . " kB)");

waitpid $locker, 0;
is(missing_messages($db, \@ids, 60), 0, "every message is written after the lock");

# nothing more to do for the worker: within the trim interval (10 s) and
# a little, the burst's memory goes back
ok(wait_until(15, sub { rss_anon($worker) - $before < ($peak - $before) / 3 }),
   "two thirds of the burst's memory are handed back (before $before kB, peak $peak kB,"
   . " now " . rss_anon($worker) . " kB)");

nginx_stop($nginx);
unlike(nginx_log($nginx), qr/\[(alert|emerg)\]|lost/, "no alert, nothing lost");

done_testing();
