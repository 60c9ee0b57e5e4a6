#!/usr/bin/env perl
# The demo speech-to-speech pipeline: a stand-in for an operator's own backend,
# offline, made of Debian packages only (pocketsphinx, apertium, espeak-ng,
# sox, opus-tools). Not part of the module: demo/pipeline/README.md.
#
#   server.pl [--listen 127.0.0.1:9000] [--pid-file F] [--log F] [--daemon]
#             [--max-children 4] [--max-body 10485760] [--max-seconds 60]
#             [--timeout 60] [--tmpdir DIR]
#
# POST /api/pipeline with audio (audio/wav, Ogg Opus, or multipart/form-data
# with one audio part); ?source_lang=en&target_lang=es (the defaults) → JSON
# with the transcript, its translation, the three timings in milliseconds,
# the engines used and the spoken translation as base64 WAV. GET /healthz
# answers {"status":"ok"}. One forked child per request, at most
# --max-children at once (the others wait in the listen queue); a request
# gets --timeout seconds in all.

use strict;
use warnings;

use File::Spec ();
use File::Temp ();
use Getopt::Long;
use IO::Socket::INET;
use JSON::PP ();
use MIME::Base64 ();
use POSIX ();
use Time::HiRes ();

my %opt = (listen => '127.0.0.1:9000', 'max-children' => 4,
           'max-body' => 10 * 1024 * 1024, 'max-seconds' => 60,
           timeout => 60, tmpdir => File::Spec->tmpdir);
GetOptions(\%opt, 'listen=s', 'pid-file=s', 'log=s', 'daemon',
           'max-children=i', 'max-body=i', 'max-seconds=i', 'timeout=i',
           'tmpdir=s')
    or die "usage: server.pl [--listen 127.0.0.1:PORT] [--pid-file F]"
         . " [--log F] [--daemon] (see its header)\n";

my $MODEL_DIR = '/usr/share/pocketsphinx/model/en-us';
my %PAIRS = ('en-es' => 'eng-spa');            # speech in: English only
my %VOICE = (es => 'es', en => 'en-us');
my %WAV_TYPES = map { $_ => 1 }
    qw(audio/wav audio/x-wav audio/wave audio/vnd.wave);
my %OGG_TYPES = map { $_ => 1 } qw(audio/ogg audio/opus application/ogg);

my $json = JSON::PP->new->canonical->utf8;

my ($host, $port) = $opt{listen} =~ /^(127(?:\.\d{1,3}){3}|localhost):(\d+)$/
    or die "error: --listen must be a loopback address and port, not"
         . " \"$opt{listen}\" (the demo pipeline is never exposed)\n";
my $MODEL_USED = engines();

my $server = IO::Socket::INET->new(LocalAddr => $host, LocalPort => $port,
                                   Proto => 'tcp', Listen => 128,
                                   ReuseAddr => 1)
    or die "error: cannot listen on $host:$port: $!\n";

daemonize() if $opt{daemon};
if ($opt{log}) {
    open STDERR, '>>', $opt{log} or die "error: cannot open $opt{log}: $!\n";
    STDERR->autoflush(1);
}
write_pid() if $opt{'pid-file'};
logline("listening on $host:$port; $MODEL_USED");

my (%children, $stop, $running);
$SIG{TERM} = $SIG{INT} = sub { $stop = 1 };
$SIG{PIPE} = 'IGNORE';
$server->timeout(1);

until ($stop) {
    reap();
    # bounded: a new connection waits in the listen queue for a free child
    if (keys %children >= $opt{'max-children'}) {
        Time::HiRes::sleep(0.05);
        next;
    }
    my $c = $server->accept or next;
    my $pid = fork;
    if (!defined $pid) {
        logline("fork: $!");
        respond($c, 503, error('unavailable', 'the pipeline cannot fork'));
        close $c;
        next;
    }
    if ($pid == 0) {
        $SIG{TERM} = $SIG{INT} = 'DEFAULT';
        close $server;
        serve($c);
        POSIX::_exit(0);
    }
    $children{$pid} = 1;
    close $c;
}

logline("stopping");
close $server;
my $deadline = time + $opt{timeout};
while (%children && time < $deadline) {
    reap();
    Time::HiRes::sleep(0.1);
}
kill 'TERM', keys %children;
unlink $opt{'pid-file'} if $opt{'pid-file'};
exit 0;


# Forget the children that have finished.
sub reap {
    while ((my $pid = waitpid(-1, POSIX::WNOHANG())) > 0) {
        delete $children{$pid};
    }
}

# One request, in a child: read it, run the pipeline, answer, clean up.
sub serve {
    my ($c) = @_;
    my $t0 = Time::HiRes::time;
    my $tmp = File::Temp->newdir('chathistory-demo-XXXXXX',
                                 DIR => $opt{tmpdir}, CLEANUP => 1);
    my ($status, $body, $req);
    local $SIG{ALRM} = sub { die { status => 504, code => 'timeout',
        message => "the pipeline took longer than $opt{timeout} s" } };
    alarm $opt{timeout};
    my $ok = eval {
        $req = read_request($c);
        ($status, $body) = route($req, "$tmp");
        1;
    };
    alarm 0;
    if (!$ok) {
        my $e = $@;
        stop_child();
        if (ref $e eq 'HASH') {
            ($status, $body) = ($e->{status}, error($e->{code}, $e->{message}));
        } else {
            chomp $e;
            logline("internal error: $e");
            ($status, $body) = (500, error('internal', 'the pipeline failed'));
        }
    }
    respond($c, $status, $body, $status == 405 ? ('Allow: POST') : ());
    linger($c);
    logline(sprintf '%s %s %d %d bytes in, %.0f ms%s',
        $req->{method} // '-', $req->{target} // '-', $status,
        length($req->{body} // ''), (Time::HiRes::time - $t0) * 1000,
        $req->{summary} // '');
}

sub route {
    my ($req, $tmp) = @_;
    my ($path, $query) = $req->{target} =~ /^([^?]*)(?:\?(.*))?$/;
    my %args = map { my ($k, $v) = split /=/, $_, 2; (unescape($k), unescape($v // '')) }
               grep { length } split /&/, $query // '';

    if ($path eq '/healthz') {
        return (200, $json->encode({ status => 'ok', model_used => $MODEL_USED }));
    }
    fail(404, 'not_found', "no such resource: $path") if $path ne '/api/pipeline';
    fail(405, 'method_not_allowed', 'use POST with the audio as the body')
        if $req->{method} ne 'POST';
    return (200, $json->encode(pipeline($req, \%args, $tmp)));
}

sub pipeline {
    my ($req, $args, $tmp) = @_;
    my $src = lc($args->{source_lang} || 'en');
    my $dst = lc($args->{target_lang} || 'es');
    s/[-_].*// for $src, $dst;                  # en-US is en
    fail(400, 'invalid_request', "no speech recognition model for"
         . " source_lang \"$src\": pocketsphinx-en-us knows English (en) only")
        if $src ne 'en';
    my $pair = $PAIRS{"$src-$dst"}
        or fail(400, 'invalid_request', "no translation from \"$src\" to"
                . " \"$dst\": apertium-eng-spa is installed (en to es)");

    my ($kind, $audio) = audio_of($req);
    write_file("$tmp/in", $audio);
    if ($kind eq 'ogg') {
        run_tool(400, 'the Ogg body is not Opus that opusdec can decode',
                 'opusdec', '--quiet', "$tmp/in", "$tmp/in.wav");
    } else {
        rename "$tmp/in", "$tmp/in.wav" or die "rename: $!\n";
    }
    # pocketsphinx's acoustic model: 16 kHz mono 16-bit, with a little
    # silence around the speech; -R seeds sox's dither: with random dither
    # pocketsphinx hears the same recording differently from run to run
    run_tool(400, 'the body is not audio that sox can read',
             'sox', '-V1', '-R', "$tmp/in.wav", '-r', '16000', '-c', '1', '-b', '16',
             '-e', 'signed-integer', "$tmp/speech.wav", 'pad', '0.3', '0.3');
    my $seconds = (-s "$tmp/speech.wav") / 32000;
    fail(413, 'payload_too_large', sprintf 'the audio is %.0f s long; at'
         . ' most %d s are taken', $seconds, $opt{'max-seconds'})
        if $seconds > $opt{'max-seconds'} + 0.6;

    my $t = Time::HiRes::time;
    my $heard = run_tool(500, 'speech recognition failed',
        'pocketsphinx_continuous', '-hmm', "$MODEL_DIR/en-us",
        '-lm', "$MODEL_DIR/en-us.lm.bin", '-dict', "$MODEL_DIR/cmudict-en-us.dict",
        '-infile', "$tmp/speech.wav", '-logfn', '/dev/null');
    my $stt_ms = elapsed($t);
    my $transcript = sentence(join ' ', grep { length } split /\s+/, $heard);
    fail(422, 'no_speech', 'no words were recognised in the audio')
        if $transcript eq '';

    write_file("$tmp/text", "$transcript\n");
    $t = Time::HiRes::time;
    run_tool(500, 'translation failed', 'apertium', '-u', $pair,
             "$tmp/text", "$tmp/translation");
    my $translate_ms = elapsed($t);
    my $translation = read_file("$tmp/translation");
    utf8::decode($translation);
    $translation =~ s/^\s+|\s+$//g;
    $translation =~ s/\s+/ /g;

    $t = Time::HiRes::time;
    my $say = $translation;
    utf8::encode($say);
    write_file("$tmp/say", "$say\n");
    run_tool(500, 'speech synthesis failed', 'espeak-ng', '-v', $VOICE{$dst},
             '-w', "$tmp/answer.wav", '-f', "$tmp/say");
    my $tts_ms = elapsed($t);
    my $answer = read_file("$tmp/answer.wav");

    $req->{summary} = sprintf ' (stt %d, translate %d, tts %d): "%s" -> "%s"',
        $stt_ms, $translate_ms, $tts_ms, $transcript, $say;
    return {
        transcript   => $transcript,
        translation  => $translation,
        source_lang  => $src,
        target_lang  => $dst,
        stt_ms       => $stt_ms,
        translate_ms => $translate_ms,
        tts_ms       => $tts_ms,
        model_used   => $MODEL_USED,
        audio_type   => 'audio/wav',
        audio_base64 => MIME::Base64::encode_base64($answer, ''),
    };
}

# The request's audio: (wav|ogg, bytes), from the body or its one audio part.
sub audio_of {
    my ($req) = @_;
    my $type = lc($req->{headers}{'content-type'} // '');
    my $body = $req->{body};
    fail(400, 'invalid_request', 'the body is empty: send the audio')
        if $body eq '';

    if ($type =~ m{^multipart/form-data}) {
        my ($boundary) = $type =~ /boundary="?([^";]+)"?/;
        fail(400, 'invalid_request', 'multipart/form-data without a boundary')
            unless defined $boundary;
        # the boundary's case as sent
        ($boundary) = $req->{headers}{'content-type'} =~ /boundary="?([^";]+)"?/i;
        my @audio;
        for my $part (split /(?:^|\r\n)--\Q$boundary\E(?:--)?[ \t]*(?:\r\n|$)/, $body) {
            my ($head, $data) = $part =~ /^(.*?)\r\n\r\n(.*)$/s or next;
            my ($ptype) = $head =~ /^content-type:\s*([^\r\n;]+)/mi;
            my $kind = kind_of(lc($ptype // ''), $data);
            push @audio, [$kind, $data] if $kind;
        }
        fail(400, 'invalid_request', 'expected one audio part (WAV or Ogg'
             . ' Opus) in the multipart body, found ' . scalar @audio)
            if @audio != 1;
        return @{$audio[0]};
    }

    my $kind = kind_of($type, $body);
    return ($kind, $body) if $kind;
    $type =~ s/\s*;.*//;
    fail(400, 'invalid_request', "the body is not a WAV (RIFF/WAVE) file")
        if $WAV_TYPES{$type};
    fail(400, 'invalid_request', "the body is not Ogg Opus") if $OGG_TYPES{$type};
    fail(415, 'unsupported_media_type', 'the body is neither WAV nor Ogg Opus')
        if $type eq '' || $type eq 'application/octet-stream';
    fail(415, 'unsupported_media_type', "send audio/wav, Ogg Opus or"
         . " multipart/form-data, not $type");
}

# wav or ogg by the content's magic bytes, for audio types and untyped bodies
sub kind_of {
    my ($type, $data) = @_;
    $type =~ s/\s*;.*//;
    return undef unless $type eq '' || $type eq 'application/octet-stream'
        || $WAV_TYPES{$type} || $OGG_TYPES{$type};
    return 'wav' if $data =~ /^RIFF.{4}WAVE/s;
    return 'ogg' if $data =~ /^OggS/ && index(substr($data, 0, 64), 'OpusHead') > 0;
    return undef;
}

sub read_request {
    my ($c) = @_;
    my $head = '';
    while ($head !~ /\r?\n\r?\n/) {
        fail(431, 'invalid_request', 'the request head is over 16 KB')
            if length $head > 16384;
        my $n = sysread($c, $head, 4096, length $head);
        die "read: $!\n" unless defined $n;
        fail(400, 'invalid_request', 'the request ended in its head') if !$n;
    }
    my ($lines, $rest) = split /\r?\n\r?\n/, $head, 2;
    my ($line, @h) = split /\r?\n/, $lines;
    my ($method, $target) = $line =~ m{^([A-Z]+) (\S+) HTTP/1\.[01]$}
        or fail(400, 'invalid_request', 'not an HTTP/1.x request');
    my %h;
    for (@h) {
        my ($k, $v) = /^([^:\s]+):\s*(.*?)\s*$/
            or fail(400, 'invalid_request', 'a malformed header line');
        $h{lc $k} = $v;
    }
    my $req = { method => $method, target => $target, headers => \%h,
                body => $rest };
    print $c "HTTP/1.1 100 Continue\r\n\r\n"
        if lc($h{expect} // '') eq '100-continue';

    if (lc($h{'transfer-encoding'} // '') eq 'chunked') {
        $req->{body} = read_chunked($c, $rest);
    } elsif (defined $h{'content-length'}) {
        my $len = $h{'content-length'};
        fail(400, 'invalid_request', 'a malformed Content-Length')
            if $len !~ /^\d{1,12}$/;
        too_large() if $len > $opt{'max-body'};
        read_more($c, \$req->{body}, $len) while length $req->{body} < $len;
        substr($req->{body}, $len) = '';
    } elsif ($method eq 'POST') {
        fail(411, 'invalid_request', 'a POST needs a Content-Length');
    }
    return $req;
}

sub read_chunked {
    my ($c, $buf) = @_;
    my $body = '';
    while (1) {
        read_more($c, \$buf, length($buf) + 1) while $buf !~ /\r\n/;
        $buf =~ s/^([0-9a-fA-F]{1,8})[^\r]*\r\n//
            or fail(400, 'invalid_request', 'a malformed chunk size');
        my $size = hex $1;
        too_large() if length($body) + $size > $opt{'max-body'};
        read_more($c, \$buf, $size + 2) while length $buf < $size + 2;
        return $body if $size == 0;
        $body .= substr($buf, 0, $size);
        substr($buf, 0, $size + 2) = '';
    }
}

sub read_more {
    my ($c, $buf, $want) = @_;
    my $n = sysread($c, $$buf, ($want - length $$buf) > 65536 ? 65536
                                                             : $want - length $$buf,
                    length $$buf);
    die "read: $!\n" unless defined $n;
    fail(400, 'invalid_request', 'the body ended before its announced length')
        if !$n;
}

sub too_large {
    fail(413, 'payload_too_large', "the body is over $opt{'max-body'} bytes");
}

sub respond {
    my ($c, $status, $body, @headers) = @_;
    my %reason = (200 => 'OK', 400 => 'Bad Request', 404 => 'Not Found',
                  405 => 'Method Not Allowed', 411 => 'Length Required',
                  413 => 'Payload Too Large', 415 => 'Unsupported Media Type',
                  422 => 'Unprocessable Content', 431 => 'Request Header Fields Too Large',
                  500 => 'Internal Server Error', 503 => 'Service Unavailable',
                  504 => 'Gateway Timeout');
    local $SIG{ALRM} = sub { die "write timeout\n" };
    alarm 10;
    eval {
        print $c "HTTP/1.1 $status " . ($reason{$status} // 'Error') . "\r\n"
            . "Content-Type: application/json\r\n"
            . "Content-Length: " . length($body) . "\r\n"
            . join('', map { "$_\r\n" } @headers)
            . "Connection: close\r\n\r\n" . $body;
    };
    alarm 0;
}

# Close as nginx's lingering close does: what the client still sends (a body
# refused before it was read) is read and dropped, for up to 5 s, so that the
# client is not reset before it has read the answer.
sub linger {
    my ($c) = @_;
    shutdown $c, 1;
    local $SIG{ALRM} = sub { die "linger\n" };
    alarm 5;
    eval {
        my $buf;
        1 while sysread($c, $buf, 65536);
    };
    alarm 0;
    close $c;
}

# Run a tool, return its stdout; exit status not 0 is a fail() with its stderr.
sub run_tool {
    my ($status, $what, @cmd) = @_;
    my $err = File::Temp->new;
    my $out = File::Temp->new;
    $running = fork // die "fork: $!\n";
    if ($running == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>&', $out;
        open STDERR, '>&', $err;
        { exec { $cmd[0] } @cmd; }
        print STDERR "cannot run $cmd[0]: $!\n";
        POSIX::_exit(127);
    }
    waitpid $running, 0;
    my $rc = $?;
    $running = undef;
    if ($rc != 0) {
        my $msg = read_file($err->filename);
        $msg =~ s/\s+/ /g;
        $msg =~ s/^\s+|\s+$//g;
        $msg = substr($msg, 0, 300);
        fail($status, $status == 400 ? 'invalid_request' : 'internal',
             "$what" . ($msg eq '' ? " ($cmd[0] exited with $rc)" : ": $msg"));
    }
    return read_file($out->filename);
}

sub stop_child {
    kill 'KILL', $running if $running;
    waitpid $running, 0 if $running;
    $running = undef;
}

sub fail {
    my ($status, $code, $message) = @_;
    die { status => $status, code => $code, message => $message };
}

sub error {
    my ($code, $message) = @_;
    return $json->encode({ error => { code => $code, message => $message } }) . "\n";
}

# pocketsphinx's words as a sentence: capitalised, "I" as a word
sub sentence {
    my ($s) = @_;
    $s =~ s/\bi\b/I/g;
    $s =~ s/\bi'/I'/g;
    return ucfirst $s;
}

sub elapsed {
    my ($t) = @_;
    my $ms = int((Time::HiRes::time - $t) * 1000 + 0.5);
    return $ms > 0 ? $ms : 1;
}

sub unescape {
    my ($s) = @_;
    $s =~ tr/+/ /;
    $s =~ s/%([0-9A-Fa-f]{2})/chr hex $1/ge;
    return $s;
}

# The engines and their versions, from the installed Debian packages.
sub engines {
    for my $tool (qw(pocketsphinx_continuous sox apertium espeak-ng opusdec)) {
        next if grep { -x "$_/$tool" } split /:/, $ENV{PATH};
        die "error: $tool is not installed (scripts/deps installs the demo's"
          . " packages: pocketsphinx pocketsphinx-en-us apertium apertium-eng-spa"
          . " espeak-ng sox opus-tools)\n";
    }
    -f "$MODEL_DIR/en-us.lm.bin"
        or die "error: no English model in $MODEL_DIR (apt-get install pocketsphinx-en-us)\n";
    -f '/usr/share/apertium/modes/eng-spa.mode'
        or die "error: no apertium eng-spa mode (apt-get install apertium-eng-spa)\n";
    my %v;
    for my $p (qw(pocketsphinx apertium apertium-eng-spa espeak-ng)) {
        my $v = `dpkg-query -W -f '\${Version}' $p 2>/dev/null`;
        $v =~ s/^\d+://;                        # epoch
        $v =~ s/-[^-]+$//;                      # Debian revision
        $v =~ s/\+dfsg.*//;
        $v{$p} = $v eq '' ? 'unknown' : $v;
    }
    return "pocketsphinx $v{pocketsphinx} en-us + apertium $v{apertium}"
         . " eng-spa $v{'apertium-eng-spa'} + espeak-ng $v{'espeak-ng'}";
}

sub daemonize {
    my $pid = fork // die "error: fork: $!\n";
    POSIX::_exit(0) if $pid;
    POSIX::setsid();
    open STDIN, '<', '/dev/null';
    open STDOUT, '>', '/dev/null';
    open STDERR, '>', '/dev/null' unless $opt{log};
}

sub write_pid {
    open my $fh, '>', "$opt{'pid-file'}.tmp"
        or die "error: cannot write $opt{'pid-file'}: $!\n";
    print $fh "$$\n";
    close $fh;
    rename "$opt{'pid-file'}.tmp", $opt{'pid-file'}
        or die "error: cannot write $opt{'pid-file'}: $!\n";
}

sub logline {
    my ($msg) = @_;
    my @t = gmtime;
    printf STDERR "%04d-%02d-%02dT%02d:%02d:%02dZ [%d] %s\n", $t[5] + 1900,
        $t[4] + 1, @t[3, 2, 1, 0], $$, $msg;
}

sub write_file {
    my ($path, $data) = @_;
    open my $fh, '>:raw', $path or die "$path: $!\n";
    print $fh $data;
    close $fh or die "$path: $!\n";
}

sub read_file {
    my ($path) = @_;
    open my $fh, '<:raw', $path or die "$path: $!\n";
    local $/;
    return scalar(<$fh>) // '';
}
