# The example configurations in conf/ are accepted by nginx (`nginx -t`) with
# the module built here, and the worker's settings file by the worker.

use strict;
use warnings;
use Test::More;
use Cwd ();
use File::Temp qw(tempdir);

my $nginx = $ENV{TEST_NGINX_BINARY} || 'nginx';
# as in t/lib/Chathistory.pm: the build's, when the variables are not set (prove runs from the top)
my $module = $ENV{TEST_NGINX_LOAD_MODULES}
             || Cwd::getcwd() . '/build/nginx/objs/ngx_http_chathistory_module.so';
-f $module or plan skip_all => "TEST_NGINX_LOAD_MODULES is not set and there is no $module";
my $worker = $ENV{CHATHISTORY_WORKER} || Cwd::getcwd() . '/build/chathistory-worker';
my $root = tempdir(CLEANUP => 1);

mkdir "$root/$_" for qw(conf logs tmp);

sub nginx_t {
    my ($conf) = @_;
    my $out = `$nginx -t -p $root/ -c $conf 2>&1`;
    return ($? == 0, $out);
}

sub write_file {
    my ($path, $text) = @_;
    open my $fh, '>', $path or die "$path: $!";
    print $fh $text;
    close $fh;
}

sub read_file {
    my ($path) = @_;
    open my $fh, '<', $path or die "$path: $!";
    local $/;
    return <$fh>;
}

# conf/chathistory.conf goes, as it is, into the http context of an nginx.conf
# like Debian's, with the thread pool it names in the main context.
write_file("$root/conf/production.conf", <<"EOF");
load_module $module;
thread_pool chathistory threads=4 max_queue=65536;
error_log $root/logs/error.log;
pid $root/logs/nginx.pid;
events { worker_connections 1024; }
http {
    client_body_temp_path $root/tmp/body;
    proxy_temp_path       $root/tmp/proxy;
    fastcgi_temp_path     $root/tmp/fastcgi;
    uwsgi_temp_path       $root/tmp/uwsgi;
    scgi_temp_path        $root/tmp/scgi;
    include               /etc/nginx/mime.types;
    include               ${\ Cwd::getcwd()}/conf/chathistory.conf;
}
EOF

SKIP: {
    skip 'not root: conf/chathistory.conf logs to /var/log/nginx', 2 if $> != 0;
    # nginx -t opens (creates) the access log: leave the machine as it was
    my $log = '/var/log/nginx/chathistory.log';
    my $had_log = -e $log;
    my ($ok, $out) = nginx_t("conf/production.conf");
    unlink $log unless $had_log;
    ok($ok, "nginx -t accepts conf/chathistory.conf") or diag $out;
    like($out, qr/test is successful/, "and says so");
}

# Without its thread pool the fragment must not pass: the test above means
# something.
my $conf = read_file("$root/conf/production.conf");
(my $broken = $conf) =~ s/^thread_pool .*\n//m;
write_file("$root/conf/broken.conf", $broken);
my ($ok, $out) = nginx_t("conf/broken.conf");
ok(!$ok, "nginx -t refuses it without the thread pool it names");
like($out, qr/thread pool "chathistory" not found|chathistory/, "naming the missing pool")
    or diag $out;

# conf/nginx.conf, the template scripts/up renders.
my $template = read_file("conf/nginx.conf");
my %values = (PREFIX => $root, MODULE_PATH => $module, HTTP_PORT => 8080,
              DATABASE_URL => $ENV{TEST_NGINX_DATABASE_URL} // 'postgresql://x@127.0.0.1/x',
              AUDIO_PATH => "$root/audio", PIPELINE_PORT => 8090,
              HTML_ROOT => "$ENV{PWD}/html",
              EMBEDDING_PROVIDER => 'hash', EMBEDDING_MODEL => 'hash-v1',
              EMBEDDING_ENDPOINT => 'http://127.0.0.1:11434/api/embed',
              EMBEDDING_AUTHORIZATION => '');
$template =~ s/\@(\w+)\@/$values{$1} \/\/ die "unknown placeholder $1"/ge;
$template =~ s/^user /# user /m if $> != 0;
write_file("$root/conf/local.conf", $template);
($ok, $out) = nginx_t("conf/local.conf");
ok($ok, "nginx -t accepts conf/nginx.conf rendered as scripts/up does") or diag $out;

# The worker's settings: every one of them, commented out or not, is taken.
SKIP: {
    skip "CHATHISTORY_WORKER is not set and there is no $worker", 2 unless -x $worker;
    skip "TEST_NGINX_DATABASE_URL is not set (t/README.md)", 2 unless $ENV{TEST_NGINX_DATABASE_URL};
    my $env = read_file("conf/chathistory-worker.env");
    my %set;
    for (split /\n/, $env) {
        next unless /^#?\s*(CHATHISTORY_[A-Z_]+)=(.*)$/;
        $set{$1} = $2;
    }
    ok(exists $set{CHATHISTORY_DATABASE_URL}, "the settings file names the database");
    # where this machine has them
    $set{CHATHISTORY_DATABASE_URL} = $ENV{TEST_NGINX_DATABASE_URL} if $ENV{TEST_NGINX_DATABASE_URL};
    $set{CHATHISTORY_MIGRATIONS_DIR} = $ENV{CHATHISTORY_MIGRATIONS_DIR} // 'migrations';
    local @ENV{keys %set} = values %set;
    my $status = `$worker migrate --status 2>&1`;
    is($?, 0, "chathistory-worker starts with all of conf/chathistory-worker.env's settings")
        or diag $status;
}

done_testing();
