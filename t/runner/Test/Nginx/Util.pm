package Test::Nginx::Util;

# Minimal re-implementation of the nginx-management half of the CPAN module
# Test::Nginx (openresty/test-nginx): settings, nginx.conf generation, the
# nginx process lifecycle and error-log access.  See t/runner/README.md.

use strict;
use warnings;

use base 'Exporter';
use POSIX qw(SIGQUIT SIGKILL SIGTERM :sys_wait_h);
use File::Path qw(make_path remove_tree);
use File::Spec ();
use IO::Socket::INET ();
use List::Util qw(shuffle);
use Time::HiRes qw(sleep time);
use Test::More ();

our $VERSION = '0.29-runner';

our @EXPORT = qw(
    env_to_nginx is_str no_long_string server_addr server_name bail_out
    add_cleanup_handler add_block_preprocessor error_log_data access_log_data
    setup_server_root write_config_file get_nginx_version get_pid_from_pidfile
    trim parse_headers parse_time run_tests timeout worker_connections workers
    master_on master_off config_preamble repeat_each master_process_enabled
    log_level no_shuffle no_root_location html_dir server_root server_port
    server_port_for_client check_accum_error_log sleep_time is_running
    $ServerPort $ServerPortForClient $ServerAddr $ServerName $NginxVersion
    $PidFile $ServRoot $ConfFile $ErrLogFile $RunTestHelper $NoLongString
    $RepeatEach
);

# ---------------------------------------------------------------- settings

our $NginxBinary       = $ENV{TEST_NGINX_BINARY} || 'nginx';
our $Workers           = 1;
our $WorkerConnections = 64;
our $LogLevel          = $ENV{TEST_NGINX_LOG_LEVEL} || 'debug';
our $MasterProcessEnabled = $ENV{TEST_NGINX_MASTER_PROCESS} || 'off';
our $UseValgrind       = $ENV{TEST_NGINX_USE_VALGRIND};
our $DaemonEnabled     = $UseValgrind ? 'off' : 'on';
our $Timeout           = $ENV{TEST_NGINX_TIMEOUT} || 3;
our $TestNginxSleep    = $ENV{TEST_NGINX_SLEEP} || 0.015;
our $Randomize         = $ENV{TEST_NGINX_RANDOMIZE};
our $NoShuffle         = $ENV{TEST_NGINX_NO_SHUFFLE} || 0;
our $ForceRestart      = $ENV{TEST_NGINX_FORCE_RESTART_ON_TEST} // 1;
our $WorkerUser        = $ENV{TEST_NGINX_WORKER_USER};
our $ServerAddr        = '127.0.0.1';
our $ServerName        = 'localhost';
our ($NoRootLocation, $NoLongString, $CheckAccumErrLog) = (0, 0, 0);
our $ConfigPreamble    = '';
our $RepeatEach        = 1;
our (@EnvToNginx, @CleanupHandlers, @BlockPreprocessors);
our ($RunTestHelper, $CheckErrorLog, $NginxVersion, $PrevConfig, $ChildPid);
our $MainPid = $$;    # END must not stop nginx from forked children
our $ErrLogFilePos = 0;

# Differs from the real module (fixed default 1984): without an explicit
# port we pick a free one, so parallel checkouts do not collide.
our $ServerPort = $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT};
$ServerPort = gen_rand_port() if $Randomize || !$ServerPort;
our $ServerPortForClient = $ENV{TEST_NGINX_CLIENT_PORT} || $ServerPort;

our $ServRoot = $Randomize ? File::Spec->rel2abs("t/servroot_$ServerPort")
              : ($ENV{TEST_NGINX_SERVROOT} || File::Spec->rel2abs('t/servroot'));
$ENV{TEST_NGINX_SERVER_ROOT} = $ServRoot;
our $LogDir     = "$ServRoot/logs";
our $ErrLogFile = "$LogDir/error.log";
our $AccLogFile = "$LogDir/access.log";
our $HtmlDir    = "$ServRoot/html";
our $ConfDir    = "$ServRoot/conf";
our $ConfFile   = "$ConfDir/nginx.conf";
our $PidFile    = "$LogDir/nginx.pid";
our $ValgrindLog = "$LogDir/valgrind.log";

# Getter/setter helpers: with an argument they set, without they return.
sub _accessor { my $ref = shift; $$ref = shift if @_; $$ref }
sub server_addr    { _accessor(\$ServerAddr, @_) }
sub server_name    { _accessor(\$ServerName, @_) }
sub timeout        { _accessor(\$Timeout, @_) }
sub workers        { _accessor(\$Workers, @_) }
sub log_level      { _accessor(\$LogLevel, @_) }
sub repeat_each    { _accessor(\$RepeatEach, @_) }
sub worker_connections { _accessor(\$WorkerConnections, @_) }
sub server_port_for_client { _accessor(\$ServerPortForClient, @_) }
sub server_port {
    ($ServerPort, $ServerPortForClient) = ($_[0], $_[0]) if @_;
    $ServerPort;
}
sub master_process_enabled {
    $MasterProcessEnabled = $_[0] ? 'on' : 'off' if @_;
    $MasterProcessEnabled;
}
sub master_on        { $MasterProcessEnabled = 'on' }
sub master_off       { $MasterProcessEnabled = 'off' }
sub no_shuffle       { $NoShuffle = 1 }
sub no_root_location { $NoRootLocation = 1 }
sub no_long_string   { $NoLongString = 1 }
sub check_accum_error_log { $CheckAccumErrLog = 1 }
sub config_preamble  { $ConfigPreamble = shift }
sub html_dir         { $HtmlDir }
sub server_root      { $ServRoot }
sub sleep_time       { $TestNginxSleep }
sub add_cleanup_handler    { unshift @CleanupHandlers, shift }
sub add_block_preprocessor(&) { unshift @BlockPreprocessors, shift }

sub env_to_nginx {
    for my $v (@_) {
        die "env_to_nginx: bad argument value: $v\n"
            if $v !~ /^[A-Za-z_]/ || $v =~ /\n/;
        push @EnvToNginx, $v;
    }
}

# ------------------------------------------------------------------ helpers

sub gen_rand_port {
    my ($used) = @_;
    for (1 .. 1000) {
        my $port = 1985 + int rand 63550;
        next if $used && $used->{$port};
        my $s = IO::Socket::INET->new(LocalAddr => $ServerAddr,
                                      LocalPort => $port, Proto => 'tcp');
        if ($s) { close $s; return $port }
    }
    die "cannot find a free TCP port\n";
}

# Alive and not a zombie (PID 1 of some containers reaps orphans slowly).
sub is_running {
    my $pid = shift;
    return 0 unless $pid && kill 0, $pid;
    open my $fh, '<', "/proc/$pid/stat" or return 1;
    return (<$fh> // '') !~ /^\d+ \(.*\) Z/;
}

# "10ms" -> 0.01, "2s" / "2" -> 2.
sub parse_time {
    my $t = shift;
    return $t unless defined $t;
    return $1 / 1000 if $t =~ /^\s*([\d.]+)\s*ms\s*$/;
    $t =~ s/^\s*([\d.]+)\s*s?\s*$/$1/;
    return $t;
}

sub trim {
    my $s = shift;
    return undef unless defined $s;
    $s =~ s/^\s+|\s+$//g;
    $s =~ s/\n/ /g;
    $s =~ s/\s{2,}/ /g;
    return $s;
}

# "Name: value" lines to a hash; "!Name" maps to undef (header must be absent).
sub parse_headers {
    my %h;
    for my $line (split /\n/, shift) {
        $line =~ s/^\s+|\s+$//g;
        next if $line eq '';
        if ($line =~ s/^!\s*//) { $h{$line} = undef; next }
        my ($k, $v) = split /\s*:\s*/, $line, 2;
        $h{$k} = $v;
    }
    return \%h;
}

# String comparison honouring regexps and no_long_string; failures of
# multi-line strings show a Text::Diff (via Test::Base::is).
sub is_str {
    my ($got, $expected, $desc) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    return Test::More::like($got, $expected, $desc) if ref $expected eq 'Regexp';
    return Test::Base::is($got, $expected, $desc);
}

sub bail_out {
    cleanup();
    Test::More::BAIL_OUT(join '', @_);
}

sub get_nginx_version {
    my $out = `$NginxBinary -V 2>&1`;
    bail_out("Failed to run \"$NginxBinary -V\": $out") if $? != 0;
    return sprintf "%d.%03d%03d", $1, $2, $3
        if $out =~ m{/(\d+)\.(\d+)\.(\d+)};
    bail_out("Cannot parse the output of \"nginx -V\": $out");
}

sub get_pid_from_pidfile {
    open my $in, '<', $PidFile or return undef;
    my $pid = <$in> // '';
    chomp $pid;
    return $pid =~ /^\d+$/ ? $pid : undef;
}

# Expand $TEST_NGINX_* from %ENV; $TEST_NGINX_RAND_PORT_N gets a free port.
sub expand_env_in_text {
    my ($text, $name, $rand_ports) = @_;
    return undef unless defined $text;
    $text =~ s{\$(TEST_NGINX_[_A-Z0-9]+)}{
        my $var = $1;
        if ($var =~ /^TEST_NGINX_RAND_PORT_\d+$/) {
            $rand_ports->{$var} = gen_rand_port(
                { $ServerPort => 1, map { $_ => 1 } values %$rand_ports })
                unless defined $rand_ports->{$var};
            $rand_ports->{$var};
        } else {
            bail_out("$name - No environment $var defined.\n")
                unless defined $ENV{$var};
            $ENV{$var};
        }
    }eg;
    return $text;
}

# --------------------------------------------------------- server root/conf

sub setup_server_root {
    remove_tree($ConfDir, $HtmlDir, $LogDir, glob("$ServRoot/*_cache"),
                glob("$ServRoot/*_temp"));
    make_path($ServRoot, $LogDir, $HtmlDir, $ConfDir);
    write_file("$HtmlDir/index.html", '<html><head><title>It works!</title>'
               . '</head><body>It works!</body></html>');
}

sub write_file {
    my ($path, $body) = @_;
    open my $out, '>', $path or bail_out("Can't open $path for writing: $!");
    binmode $out;
    print $out $body;
    close $out;
}

# --- user_files: ">>> name" headed chunks, or eval'd [[name, body], ...].
sub write_user_files {
    my ($block, $rand_ports) = @_;
    my $files = $block->user_files or return;
    if (!ref $files) {
        my @list;
        for (split /^/, $files) {
            if (/^>>> (\S+)/) { push @list, [$1, ''] }
            elsif (@list)     { $list[-1][1] .= $_ }
        }
        $files = \@list;
    }
    for my $f (@$files) {
        my ($fname, $body) = @$f;
        my $path = $fname =~ m{^/} ? $fname : "$HtmlDir/$fname";
        make_path($1) if $path =~ m{(.*)/} && !-d $1;
        write_file($path, expand_env_in_text($body // '', $block->name, $rand_ports));
    }
}

sub write_config_file {
    my ($block, $config, $rand_ports) = @_;
    my $name = $block->name;
    my $expand = sub { expand_env_in_text($_[0] // '', $name, $rand_ports) };
    my $http_config = $expand->(scalar $block->http_config);
    my $main_config = $block->main_config // '';
    # Like the real module: load_module lines are appended to main_config.
    $main_config .= join ' ', map { "load_module $_;" }
                    grep { length } split /\s+/, $ENV{TEST_NGINX_LOAD_MODULES} // '';
    $main_config = $expand->($main_config);
    my $post_main = $expand->(scalar $block->post_main_config);
    my $err_log   = $block->error_log_file || $ErrLogFile;
    my $srv_name  = $block->server_name // $ServerName;
    my $env = join '', map { my $v = /\s/ ? "'$_'" : $_; "env $v;\n" }
              qw(MOCKEAGAIN_VERBOSE MOCKEAGAIN MOCKEAGAIN_WRITE_TIMEOUT_PATTERN
                 LD_PRELOAD LD_LIBRARY_PATH ASAN_OPTIONS), @EnvToNginx;
    my $root_loc = $NoRootLocation ? '' : <<"_EOC_";
        location / {
            root $HtmlDir;
            index index.html index.htm;
        }
_EOC_
    my $user = defined $WorkerUser ? "user $WorkerUser;\n"
             : $> == 0 ? "user root;\n" : '';
    write_file($ConfFile, <<"_EOC_");
worker_processes  $Workers;
daemon $DaemonEnabled;
master_process $MasterProcessEnabled;
error_log $err_log $LogLevel;
pid       $PidFile;
$env
$main_config

http {
    access_log $AccLogFile;
    default_type text/plain;
    keepalive_timeout  68;

$http_config

    server {
        listen          $ServerPort;
        server_name     '$srv_name';

        client_max_body_size 30M;

        # Begin preamble config...
$ConfigPreamble
        # End preamble config...

        # Begin test case config...
$config
        # End test case config.

$root_loc    }
}

$post_main

events {
    accept_mutex off;
    worker_connections  $WorkerConnections;
}
$user
_EOC_
}

# ---------------------------------------------------------- nginx lifecycle

sub nginx_cmd {
    my ($no_valgrind) = @_;
    my $cmd = "$NginxBinary -p $ServRoot/ -c $ConfFile";
    # Start-up errors go to our error.log, not to the binary's compiled-in
    # default (/var/log/nginx/error.log for Debian's nginx): needs -e (1.19.5).
    $cmd .= " -e $ErrLogFile" if $NginxVersion >= 1.019005;
    return $cmd if !$UseValgrind || $no_valgrind;
    my $opts = $UseValgrind =~ /^\d+$/
        ? '--tool=memcheck --leak-check=full --show-possibly-lost=no'
        : $UseValgrind;
    # ./valgrind.suppress like the real module, plus the runner's own file.
    (my $own = __FILE__) =~ s{Test/Nginx/Util\.pm$}{valgrind.suppress};
    $opts .= " --suppressions=$_" for grep { -f } 'valgrind.suppress', $own;
    return "valgrind -q --num-callers=100 --gen-suppressions=all "
         . "--log-file=$ValgrindLog $opts $cmd";
}

sub start_nginx {
    my ($name) = @_;
    my $cmd = nginx_cmd();
    if ($UseValgrind) {            # foreground nginx in a child process
        defined(my $pid = fork) or bail_out("$name - fork() failed: $!");
        if (!$pid) { setpgrp; exec "exec $cmd" or POSIX::_exit(127) }
        $ChildPid = $pid;
    } else {                       # "daemon on": returns once nginx is up
        my $waited = 0;
        while (system("$cmd > /dev/null") != 0) {
            my $log = read_file($ErrLogFile);
            bail_out("$name - Cannot start nginx using command \"$cmd\" "
                     . "(status code $?).")
                if $log !~ /Address already in use/ || $waited > 10;
            sleep 0.2; $waited += 0.2;
        }
    }
    wait_for_port($UseValgrind ? 30 : 5);
}

sub wait_for_port {
    my $deadline = time + shift;
    while (time < $deadline) {
        my $s = IO::Socket::INET->new(PeerAddr => $ServerAddr,
            PeerPort => $ServerPortForClient, Proto => 'tcp', Timeout => 1);
        if ($s) { close $s; return 1 }
        return 0 if $ChildPid && waitpid($ChildPid, WNOHANG) == $ChildPid;
        sleep 0.02;
    }
    return 0;
}

# QUIT, wait up to $Timeout, then TERM/KILL; also reaps our valgrind child.
sub kill_process {
    my ($pid, $name) = @_;
    return unless is_running($pid);
    kill SIGQUIT, $pid;
    my $left = $Timeout + ($UseValgrind ? 10 : 0);
    while ($left > 0 && is_running($pid)) {
        waitpid($pid, WNOHANG);
        sleep 0.02; $left -= 0.02;
    }
    for my $sig (SIGTERM, SIGKILL) {
        last unless is_running($pid);
        warn "$name - nginx $pid did not exit on QUIT, sending signal $sig\n";
        kill $sig, $pid;
        sleep 0.2;
        waitpid($pid, WNOHANG);
    }
}

sub stop_nginx {
    my ($name) = @_;
    my $pid = get_pid_from_pidfile() // $ChildPid;
    kill_process($pid, $name) if $pid;
    kill_process($ChildPid, $name) if $ChildPid && $ChildPid != ($pid // 0);
    waitpid($ChildPid, 0) if $ChildPid;
    undef $ChildPid;
    unlink $PidFile;
}

# Valgrind mode: nginx is stopped after every block; any valgrind report fails.
sub check_valgrind {
    my ($name) = @_;
    stop_nginx($name);
    my $report = read_file($ValgrindLog);
    return unless length $report;
    Test::More::fail("$name - valgrind reported errors");
    Test::More::diag($report);
}

sub read_file {
    my $path = shift;
    open my $in, '<', $path or return '';
    local $/;
    return scalar(<$in>) // '';
}

# Error-log lines written since the previous call (or all of them with
# check_accum_error_log).  Sleeps a bit first, like the real module, so
# that log-phase messages are flushed.
sub error_log_data {
    sleep $TestNginxSleep * 3;
    open my $in, '<', $ErrLogFile or return [];
    seek $in, $ErrLogFilePos, 0 if !$CheckAccumErrLog && $ErrLogFilePos;
    my @lines = <$in>;
    $ErrLogFilePos = tell $in unless $CheckAccumErrLog;
    return \@lines;
}

sub access_log_data {
    sleep $TestNginxSleep * 3;
    open my $in, '<', $AccLogFile or return [];
    return [<$in>];
}

# ---------------------------------------------------------------- main loop

sub cleanup {
    $_->() for @CleanupHandlers;
    @CleanupHandlers = ();
}

sub run_tests {
    $NginxVersion = get_nginx_version();
    $ENV{TEST_NGINX_SERVER_PORT} //= $ServerPort;
    my @blocks = Test::Base::blocks();
    @blocks = shuffle @blocks unless $NoShuffle;
    for my $block (@blocks) {
        $_->($block) for @BlockPreprocessors;
        $block->set_value('name', "$0 " . $block->name);
        run_test($block);
    }
    cleanup();
}

# "N: <op> x.y.z [: reason]" against the nginx version, or "N: perl-code".
sub skip_spec {
    my ($block) = @_;
    my $name = $block->name;
    if (defined(my $s = $block->skip_nginx)) {
        $s =~ /^\s*(\d+)\s*:\s*([<>]=?)\s*(\d+)\.(\d+)\.(\d+)\s*(?::\s*(.*?))?\s*$/
            or bail_out("$name - Invalid --- skip_nginx spec: $s");
        my $ver = sprintf "%d.%03d%03d", $3, $4, $5;
        my $skip = eval "$NginxVersion $2 $ver";
        return $skip ? ($1, $6 || "nginx version $2 $3.$4.$5") : ();
    }
    if (defined(my $s = $block->skip_eval)) {
        $s =~ /^\s*(\d+)\s*:\s*(.*)/s
            or bail_out("$name - Invalid --- skip_eval spec: $s");
        my $n = $1;
        my $skip = eval $2;
        bail_out("$name - skip_eval - failed to eval \"$2\": $@") if $@;
        return $skip ? ($n, 'skip_eval') : ();
    }
    return;
}

# Sections of the real module that this runner does not implement.
my @Unsupported = qw(http2 http3 stap tcp_listen udp_listen curl
    shutdown_error_log no_shutdown_error_log reload_fails http09
    response_body_filters request_eval response_body_eval skip_nginx2
    skip_openssl todo_nginx);

sub run_test {
    my ($block) = @_;
    my $name = $block->name;
    for my $sec (@Unsupported) {
        warn "$name - section --- $sec is not supported by t/runner\n"
            if defined $block->$sec;
    }
    my $rand_ports = {};
    my $config = expand_env_in_text(scalar $block->config, $name, $rand_ports);
    local $LogLevel = $block->log_level || $LogLevel;
    my ($skip_n, $skip_reason) = skip_spec($block);

    my $restart;
    if (defined $config) {
        $restart = !defined $PrevConfig || $config ne $PrevConfig || $ForceRestart;
    } elsif (!defined $PrevConfig) {
        bail_out("$name - No '--- config' section specified and could not "
                 . "get previous one.");
    } elsif (!is_running(get_pid_from_pidfile())) {
        if ($UseValgrind) {
            # Valgrind mode stops nginx after each block: bring it back with
            # the previous block's nginx.conf as it is (this block has no
            # http_config, main_config... of its own), and a fresh valgrind.log.
            if (!$skip_n) { unlink $ValgrindLog; start_nginx($name) }
        } else {
            ($config, $restart) = ($PrevConfig, 1);
        }
    }
    if ($restart && !$skip_n) {
        $PrevConfig = $config;
        stop_nginx($name);
        setup_server_root();
        write_user_files($block, $rand_ports);
        write_config_file($block, $config, $rand_ports);
        bail_out("$name - Cannot find the nginx executable \"$NginxBinary\"")
            unless can_run($NginxBinary);
        return run_must_die($block) if defined $block->must_die;
        start_nginx($name);
    }

    run_init($block);
    $ErrLogFilePos = 0;
    for my $rep (0 .. $RepeatEach - 1) {
        write_user_files($block, $rand_ports) if $rep > 0;
        if ($skip_n) {
            SKIP: { Test::More::skip("$name - $skip_reason", $skip_n) }
        } elsif (defined(my $todo = $block->todo)) {
            $todo =~ /^\s*(\d+)\s*:\s*(.*)/s
                or bail_out("$name - Invalid --- todo spec: $todo");
            TODO: { Test::More::todo_skip("$name - $2", $1) }
        } else {
            $RunTestHelper->($block, 0, $rep);
        }
    }
    return if $skip_n;
    check_nginx_alive($name);
    check_valgrind($name) if $UseValgrind;
}

# --- must_die: starting nginx must fail (with the given exit code, if
# any); then only the error-log sections are checked.  No request is sent.
sub run_must_die {
    my ($block) = @_;
    my $name = $block->name;
    my $want = $block->must_die;
    $ErrLogFilePos = 0;
    for my $rep (0 .. $RepeatEach - 1) {
        my $status = system(nginx_cmd(1) . ' > /dev/null');
        if ($status == -1) {
            Test::More::fail("$name - failed to execute the nginx command line");
        } elsif ($status & 127) {
            Test::More::fail("$name - nginx killed by signal " . ($status & 127));
        } elsif ($want =~ /^\s*\d+\s*$/) {
            Test::More::is($status >> 8, $want, "$name - die with the expected exit code");
        } else {
            Test::More::isnt($status, 0, "$name - die as expected");
        }
        $CheckErrorLog->($block, $rep);
        if ($status == 0) {
            warn "WARNING: $name - nginx must die but it does not; killing it\n";
            stop_nginx($name);
        }
    }
}

# --- init: Perl code evaluated once per block (after nginx is (re)started,
# before the first request), in this package, exactly like the real module.
sub run_init {
    my ($block) = @_;
    my $code = $block->init or return;
    eval $code;
    bail_out($block->name . " - init failed: $@") if $@;
}

# Stricter than the real module: fail if the nginx we started has died
# (e.g. segfault with master_process off).
sub check_nginx_alive {
    my ($name) = @_;
    my $pid = get_pid_from_pidfile();
    return if $pid && is_running($pid);
    Test::More::fail("$name - nginx is not running any more after the block"
                     . " (crashed?)");
    Test::More::diag(`tail -n 20 $ErrLogFile 2>&1`);
}

sub can_run {
    my ($cmd) = @_;
    return -x $cmd ? $cmd : undef if $cmd =~ m{/};
    for my $dir (split /:/, $ENV{PATH} // '') {
        return "$dir/$cmd" if -f "$dir/$cmd" && -x _;
    }
    return undef;
}

END {
    return if $$ != $MainPid;
    local $?;
    cleanup();
    if (!$ENV{TEST_NGINX_NO_CLEAN} || $UseValgrind) {
        my $pid = get_pid_from_pidfile();
        kill_process($pid, 'END') if $pid;
        waitpid($ChildPid, 0) if $ChildPid;
    }
    remove_tree($ServRoot) if $Randomize && $ServRoot =~ m{/t/servroot_\d+$};
}

1;
