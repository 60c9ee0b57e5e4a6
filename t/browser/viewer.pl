#!/usr/bin/perl
# The history viewer (html/) in a real browser: Debian's headless Chromium driven through
# chromedriver's WebDriver HTTP API, against a live system (nginx serving html/ at /, the
# API, the pipeline with chathistory_capture on, the worker). Run it through
# scripts/browser-test, which starts the system when no URL is given:
#
#   perl t/browser/viewer.pl --base http://127.0.0.1:8080 [--key KEY] [--out build/browser]
#
#   --base URL      where nginx serves the viewer (loopback only); or CHATHISTORY_BASE_URL
#   --key KEY       an API key: the viewer (and the seeding) then use /v1; or CHATHISTORY_API_KEY
#   --pipeline P    the pipeline location (default /api/pipeline)
#   --out DIR       screenshots (default build/browser)
#
# It seeds its own sessions (through the API and the pipeline, with WAVs from espeak-ng),
# checks each step in the page, prints one "ok N - ..." or "not ok N - ..." line per step,
# and removes what it seeded. Every wait has a timeout; the run stops by itself.
use strict;
use warnings;
use Getopt::Long;
use HTTP::Tiny;
use JSON::PP;
use MIME::Base64 qw(decode_base64);
use File::Path qw(make_path);
use File::Temp qw(tempdir);
use IO::Socket::INET;
use POSIX qw(WNOHANG);
use Time::HiRes qw(time sleep);

my %o = (
    base     => $ENV{CHATHISTORY_BASE_URL} // '',
    key      => $ENV{CHATHISTORY_API_KEY} // '',
    pipeline => '/api/pipeline',
    out      => 'build/browser',
    chromium => $ENV{CHROMIUM} // '/usr/bin/chromium',
    driver   => $ENV{CHROMEDRIVER} // '/usr/bin/chromedriver',
);
GetOptions(\%o, 'base=s', 'key=s', 'pipeline=s', 'out=s', 'chromium=s', 'driver=s')
    or die "usage: $0 --base URL [--key KEY] [--pipeline PATH] [--out DIR]\n";
$o{base} ||= shift // '';
$o{base} =~ s{/+$}{};
$o{base} =~ m{^http://(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?$}
    or die "--base must be a loopback http:// URL, not \"$o{base}\"\n";
-x $o{chromium} or die "no $o{chromium} (apt-get install chromium: scripts/deps)\n";
-x $o{driver}   or die "no $o{driver} (apt-get install chromium-driver: scripts/deps)\n";
system('sh', '-c', 'command -v espeak-ng >/dev/null && command -v sox >/dev/null') == 0 or die "no espeak-ng or sox (scripts/deps)\n";

binmode STDOUT, ':encoding(UTF-8)';
binmode STDERR, ':encoding(UTF-8)';
my $json   = JSON::PP->new->utf8->canonical;
my $http   = HTTP::Tiny->new(timeout => 30, agent => 'chathistory-browser-test');
my $prefix = $o{key} ? '/v1' : '/api';
my $tag    = sprintf 'bt%x', int(time * 1000) % 0xffffffff;
my $tmp    = tempdir('chathistory-browser.XXXXXX', TMPDIR => 1, CLEANUP => 1);
make_path($o{out});
unlink glob "$o{out}/*.png";          # this run's screenshots only

my ($n, $failed) = (0, 0);
# (the prototype puts the condition in scalar context: a failed match is false, not gone)
sub ok($$;$) {
    my ($cond, $what, $detail) = @_;
    $n++;
    printf "%s %d - %s%s\n", $cond ? 'ok' : 'not ok', $n, $what, defined $detail ? " ($detail)" : '';
    $failed++ unless $cond;
    return $cond;
}
sub note { print "# @_\n" }
sub count { my ($k, $one, $many) = @_; "$k " . ($k == 1 ? $one : $many) }

# ---------------------------------------------------------------- the API, for seeding

sub api {
    my ($method, $path, $body) = @_;
    my %h = ('Content-Type' => 'application/json');
    $h{Authorization} = "Bearer $o{key}" if $o{key};
    my $res = $http->request($method, "$o{base}$prefix$path",
        { headers => \%h, defined $body ? (content => $json->encode($body)) : () });
    die "$method $prefix$path: $res->{status} $res->{content}\n" unless $res->{success};
    return $res->{status} == 204 ? undef : $json->decode($res->{content});
}

sub espeak_wav {
    my ($file, $text) = @_;
    system('espeak-ng', '-v', 'en-us', '-w', $file, $text) == 0 or die "espeak-ng failed\n";
    return $file;
}

# A WAV through the pipeline location into a session: the capture records it.
sub pipeline_wav {
    my ($sid, $wav) = @_;
    open my $fh, '<:raw', $wav or die "$wav: $!\n";
    my $data = do { local $/; <$fh> };
    my %h = ('Content-Type' => 'audio/wav');
    $h{Authorization} = "Bearer $o{key}" if $o{key};
    my $res = $http->request('POST', "$o{base}$o{pipeline}?session_id=$sid", { headers => \%h, content => $data });
    die "POST $o{pipeline}: $res->{status} $res->{content}\n" unless $res->{success};
    my $mid = $res->{headers}{'x-chathistory-message-id'}
        or die "POST $o{pipeline}: no X-Chathistory-Message-Id (is chathistory_capture on there?)\n";
    return ($mid, $json->decode($res->{content}));
}

sub wait_until {
    my ($what, $timeout, $check) = @_;
    my $end = time + $timeout;
    while (time < $end) {
        my $r = eval { $check->() };
        return $r if $r;
        sleep 0.25;
    }
    die "timed out after ${timeout}s waiting for $what\n";
}

sub message_of {
    my ($sid, $mid) = @_;
    my $page = api('GET', "/sessions/$sid/messages?limit=100");
    my ($m) = grep { $_->{id} eq $mid } @{ $page->{data} };
    return $m;
}

# The stored Ogg Opus file's duration: the last page's granule position less the pre-skip,
# at 48 kHz.
sub ogg_duration {
    my ($url) = @_;
    my %h;
    $h{Authorization} = "Bearer $o{key}" if $o{key};
    my $res = $http->get("$o{base}$url", { headers => \%h });
    die "GET $url: $res->{status}\n" unless $res->{success};
    my $d = $res->{content};
    substr($d, 0, 4) eq 'OggS' or die "$url is not Ogg\n";
    my $head = index($d, 'OpusHead');
    $head >= 0 or die "$url has no OpusHead\n";
    my $preskip = unpack 'v', substr($d, $head + 10, 2);
    my $last = rindex($d, 'OggS');
    my ($lo, $hi) = unpack 'VV', substr($d, $last + 6, 8);
    return (($hi * 2**32 + $lo) - $preskip) / 48000;
}

# ---------------------------------------------------------------- chromedriver

my $driver_pid;
my $wd_port = do {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 1) or die "bind: $!\n";
    my $p = $s->sockport;
    close $s;
    $p;
};
my $wd = "http://127.0.0.1:$wd_port";
my $sess;

sub wd {
    my ($method, $path, $body) = @_;
    my $url = $path =~ m{^/session$} ? "$wd$path" : "$wd/session/$sess$path";
    my $res = $http->request($method, $url, {
        headers => { 'Content-Type' => 'application/json' },
        content => $json->encode($body // {}),
    });
    my $v = eval { $json->decode($res->{content}) } // {};
    if (!$res->{success}) {
        my $e = ref $v->{value} eq 'HASH' ? "$v->{value}{error}: $v->{value}{message}" : $res->{content};
        $e =~ s/\n.*//s;
        die "WebDriver $method $path: $e\n";
    }
    return $v->{value};
}

sub js       { my ($code, @args) = @_; wd('POST', '/execute/sync', { script => $code, args => \@args }) }
sub js_async { my ($code, @args) = @_; wd('POST', '/execute/async', { script => $code, args => \@args }) }

# Waits (bounded) until the JavaScript expression is truthy in the page; returns its value.
sub wait_js {
    my ($what, $expr, $timeout) = @_;
    $timeout //= 15;
    my $end = time + $timeout;
    my $last_err = '';
    while (time < $end) {
        my $v = eval { js("return ($expr);") };
        $last_err = $@ if $@;
        return $v if $v;
        sleep 0.2;
    }
    my $notice = eval { js("const n=document.getElementById('notice'); return n && !n.hidden ? n.innerText : ''") } // '';
    die "timed out after ${timeout}s waiting for $what" . ($notice ? " (the page says: $notice)" : '')
        . ($last_err ? " ($last_err)" : '') . "\n";
}

sub el {
    my ($css) = @_;
    my $v = wd('POST', '/element', { using => 'css selector', value => $css });
    return (values %$v)[0];
}
sub click { my ($css) = @_; wd('POST', '/element/' . el($css) . '/click', {}) }
sub type_into {
    my ($css, $text) = @_;
    my $id = el($css);
    wd('POST', "/element/$id/clear", {});
    wd('POST', "/element/$id/value", { text => $text });
}
sub go { my ($hash) = @_; wd('POST', '/url', { url => "$o{base}/$hash" }) }

sub shot {
    my ($name) = @_;
    my $png = decode_base64(wd('GET', '/screenshot'));
    open my $fh, '>:raw', "$o{out}/$name.png" or die "$o{out}/$name.png: $!\n";
    print $fh $png;
    close $fh;
    note "screenshot $o{out}/$name.png";
}

sub notice_text {
    return js("const n=document.getElementById('notice'); return n.hidden ? '' : n.innerText") // '';
}

sub stop_driver {
    eval { wd('DELETE', '') } if $sess;
    undef $sess;
    if ($driver_pid) {
        kill 'TERM', $driver_pid;
        for (1 .. 50) { last if waitpid($driver_pid, WNOHANG) != 0; sleep 0.1 }
        kill 'KILL', $driver_pid if kill 0, $driver_pid;
        waitpid($driver_pid, 0);
        undef $driver_pid;
    }
}

# ---------------------------------------------------------------- seeding

my @seeded;
sub cleanup {
    for my $sid (@seeded) { eval { api('DELETE', "/sessions/$sid") } }
    @seeded = ();
}
END { my $rc = $?; stop_driver(); cleanup(); $? = $rc }
$SIG{ALRM} = sub { die "the whole run took over 300 s\n" };
$SIG{INT} = $SIG{TERM} = sub { die "interrupted\n" };
alarm 300;

my $run = eval {
    note "base $o{base}, API $prefix, pipeline $o{pipeline}, tag $tag";
    my $health = $http->get("$o{base}/");
    die "GET $o{base}/: $health->{status} (is the viewer served at / ?)\n"
        unless $health->{success} && $health->{content} =~ /Chat history/;

    my $talk  = api('POST', '/sessions', { source_lang => 'en', target_lang => 'es', audio_enabled => JSON::PP::true,
                                          title => 'Trip to Madrid' });
    my $other = api('POST', '/sessions', { source_lang => 'en', target_lang => 'es', title => "Rename me $tag" });
    my $doomed = api('POST', '/sessions', { source_lang => 'en', target_lang => 'es', title => "Delete me $tag" });
    push @seeded, $talk->{id}, $other->{id}, $doomed->{id};
    # phrases the demo pipeline's pocketsphinx hears word for word from espeak-ng (demo/pipeline/README.md)
    my @said = ('we are going to the beach', 'hello world', 'I want a coffee please');
    my @mids;
    for my $i (0 .. $#said) {
        my ($mid) = pipeline_wav($talk->{id}, espeak_wav("$tmp/seed$i.wav", $said[$i]));
        push @mids, $mid;
    }
    pipeline_wav($doomed->{id}, "$tmp/seed0.wav");
    # a full first page of newer sessions, so that the seeded ones are behind "More"
    for my $i (1 .. 20) {
        push @seeded, api('POST', '/sessions', { source_lang => 'de', target_lang => 'fr', title => "Filler $i $tag" })->{id};
    }
    my @msgs = map {
        my $mid = $_;
        wait_until("message $mid with its audio", 20, sub { my $m = message_of($talk->{id}, $mid); $m && $m->{has_audio} && $m });
    } @mids;
    note "seeded 3 sessions, 4 messages; the pipeline heard: " . join(' | ', map { $_->{source_text} // '' } @msgs);
    my $stored = ogg_duration($msgs[0]{audio_url});

    # the fake microphone: a WAV the talk panel records from
    # (a second of silence first: the fake device starts when the page opens it, a little
    # before the recorder listens; played once, then silence)
    espeak_wav("$tmp/mic-speech.wav", 'see you tomorrow');
    system('sox', "$tmp/mic-speech.wav", "$tmp/mic.wav", 'pad', '1', '0') == 0 or die "sox failed\n";
    my $mic = "$tmp/mic.wav";

    # ------------------------------------------------ the browser
    $driver_pid = fork // die "fork: $!\n";
    if (!$driver_pid) {
        open STDOUT, '>', "$tmp/chromedriver.log";
        open STDERR, '>&', \*STDOUT;
        exec $o{driver}, "--port=$wd_port", '--allowed-ips=127.0.0.1' or exit 127;
    }
    wait_until('chromedriver', 15, sub { my $r = $http->get("$wd/status"); $r->{success} && $json->decode($r->{content})->{value}{ready} });
    my $caps = wd('POST', '/session', { capabilities => { alwaysMatch => {
        browserName => 'chrome',
        'goog:chromeOptions' => {
            binary => $o{chromium},
            args => [
                '--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
                '--window-size=1280,900', '--lang=en-US', '--no-first-run',
                '--autoplay-policy=no-user-gesture-required',
                '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
                "--use-file-for-fake-audio-capture=$mic%noloop",
                "--user-data-dir=$tmp/profile",
            ],
        },
        'goog:loggingPrefs' => { browser => 'ALL' },
        timeouts => { script => 20000, pageLoad => 20000, implicit => 0 },
    } } });
    $sess = $caps->{sessionId};
    note "browser $caps->{capabilities}{browserVersion}";

    # connection: /v1 with the key (sessionStorage), else /api
    go('#/sessions');
    wait_js('the page', "document.querySelector('h1') && document.querySelector('h1').textContent === 'Sessions'");
    if ($o{key}) {
        click('#conn-button');
        click('#conn-dialog input[value="/v1"]');
        type_into('#conn-key', $o{key});
        type_into('#conn-pipeline', $o{pipeline});
        click('#conn-dialog button[value="save"]');
        wait_js('the /v1 connection', "document.getElementById('conn-button').textContent.startsWith('/v1')");
        my $url = js('return location.href');
        ok(index($url, $o{key}) < 0 && js("return sessionStorage.getItem('chathistory.key')") eq $o{key},
           'the API key is kept in sessionStorage, not in the URL');
    }

    # 1. the seeded sessions, newest first (keyset pages: the first is full of newer ones),
    # with their counts
    wait_js('the first page', "document.querySelectorAll('[data-session-id]').length === 20");
    my $first = js("return [...document.querySelectorAll('[data-session-id] a.title')].map(e => e.textContent)");
    ok($first->[0] eq "Filler 20 $tag" && $first->[19] eq "Filler 1 $tag" && js("return !document.getElementById('sessions-more').hidden"),
       'the first page holds the 20 newest sessions, and a "More sessions" button');
    click('#sessions-more');
    wait_js('the second page', "document.querySelector('[data-session-id=\"$talk->{id}\"]')");
    wait_js('the message counts', "[...document.querySelectorAll('[data-session-id=\"$talk->{id}\"] .count')].some(e => e.textContent === '3 messages')", 10);
    my $order = js("return [...document.querySelectorAll('[data-session-id]')].map(e => e.dataset.sessionId)");
    my %pos; @pos{@$order} = 0 .. $#$order;
    ok(defined $pos{$doomed->{id}} && $pos{$doomed->{id}} < $pos{$other->{id}} && $pos{$other->{id}} < $pos{$talk->{id}},
       'the sessions list shows the seeded sessions newest first, with "3 messages"',
       scalar(@$order) . ' sessions listed after "More"');
    js("document.querySelector('[data-session-id=\"' + arguments[0] + '\"]').scrollIntoView({ block: 'center' })", $other->{id});
    shot('sessions');

    # 2. open one: the messages in conversation order, transcript beside translation
    click(qq{[data-session-id="$talk->{id}"] a.title});
    wait_js('the session view', "document.querySelectorAll('#messages [data-message-id]').length === 3");
    my $ids = js("return [...document.querySelectorAll('#messages [data-message-id]')].map(e => e.dataset.messageId)");
    my $texts = js("const li = document.getElementById('m-' + arguments[0]); return [li.querySelector('.source p').textContent, li.querySelector('.target p').textContent, li.querySelector('.timings').textContent]", $mids[0]);
    ok("@$ids" eq "@mids", 'the session shows its 3 messages in conversation order');
    ok($texts->[0] eq ($msgs[0]{source_text} // '—') && $texts->[1] eq ($msgs[0]{translated_text} // '—') && $texts->[2] =~ /stt \d+ ms/,
       'a message shows transcript and translation side by side, and its timings', "\"$texts->[0]\" / \"$texts->[1]\" / $texts->[2]");

    # 3. its audio: decoded by the browser, duration as stored, playing
    my $audio = js_async(<<'JS', $mids[0]);
const done = arguments[arguments.length - 1];
const a = document.querySelector('#m-' + arguments[0] + ' audio');
if (!a) return done({ error: 'no audio element' });
const fail = () => done({ error: 'media error ' + (a.error && a.error.code) });
a.addEventListener('error', fail);
const go = () => {
  const duration = a.duration;
  a.play().then(() => {
    const t0 = a.currentTime;
    setTimeout(() => {
      const t1 = a.currentTime;
      a.pause();
      a.currentTime = duration / 2;               // a seek: a range request
      a.addEventListener('seeked', () => done({ duration, t0, t1, seeked: a.currentTime, src: a.currentSrc }), { once: true });
    }, 700);
  }, (e) => done({ error: 'play: ' + e.message }));
};
if (a.readyState >= 1 && isFinite(a.duration)) go(); else a.addEventListener('loadedmetadata', go, { once: true });
JS
    if ($audio->{error}) {
        ok(0, 'the browser decodes the stored Ogg Opus', $audio->{error});
    } else {
        ok(abs($audio->{duration} - $stored) < 0.1,
           'the browser decodes the stored Ogg Opus: its duration is the stored audio\'s',
           sprintf('duration %.3f s, stored %.3f s', $audio->{duration}, $stored));
        ok($audio->{t1} - $audio->{t0} > 0.2, 'the audio plays: currentTime advances',
           sprintf('%.3f s -> %.3f s in 0.7 s', $audio->{t0}, $audio->{t1}));
        ok(abs($audio->{seeked} - $audio->{duration} / 2) < 0.1, 'seeking works', sprintf('seeked to %.3f s', $audio->{seeked}));
    }
    shot('session');

    # 4. search for a word the pipeline heard, follow the result to the message
    my ($word) = sort { length $b <=> length $a } grep { length > 3 } split /[^a-z]+/, lc($msgs[1]{source_text} // '');
    $word //= 'museum';
    wait_until('the embeddings', 30, sub { my $m = message_of($talk->{id}, $mids[1]); $m && $m->{embedding_status} eq 'ready' });
    go("#/search?q=$word&mode=semantic&session=$talk->{id}");
    wait_js('search results', "document.querySelectorAll('#results [data-message-id]').length > 0 || /0 results/.test(document.getElementById('search-status')?.textContent || '')");
    my $hits = js("return [...document.querySelectorAll('#results [data-message-id]')].map(e => [e.dataset.messageId, e.querySelector('.score').textContent])");
    my ($hit) = grep { $_->[0] eq $mids[1] } @$hits;
    eval { wait_js('the session filter', "document.querySelector('#search-session option[value=\"$talk->{id}\"]')", 5) };
    my $filter = js("const o = document.querySelectorAll('#search-session option[value=\"' + arguments[0] + '\"]'); return o.length + ' ' + (o[0] && o[0].selected) + ' ' + (o[0] && o[0].textContent)", $talk->{id});
    ok($filter =~ /^1 true Trip to Madrid/, 'the session filter names the session, once', $filter);
    ok($hit, "a semantic search for \"$word\" in the session finds the message", ($hit ? "score $hit->[1], " : '') . count(scalar(@$hits), 'result', 'results'));
    shot('search');
    if ($hit) {
        click(qq{#results [data-message-id="$mids[1]"] a.open});
        wait_js('the message in its session', "document.querySelector('#m-$mids[1].target')");
        my $focus = js("return document.activeElement && document.activeElement.id");
        ok($focus eq "m-$mids[1]" && js("return location.hash") eq "#/sessions/$talk->{id}?m=$mids[1]",
           'the result links to the message in its session, highlighted and focused');
    }
    # and the form itself: keyword mode, through the page's controls
    go('#/search');
    wait_js('the search form', "document.getElementById('q')");
    type_into('#q', $word);
    js("document.getElementById('mode').value = 'keyword'");
    click('#search-form button[type=submit]');
    wait_js('keyword results', "/result/.test(document.getElementById('search-status')?.textContent || '') && !/Searching/.test(document.getElementById('search-status').textContent)");
    my $kw = js("return [...document.querySelectorAll('#results [data-message-id]')].map(e => e.dataset.messageId)");
    ok((grep { $_ eq $mids[1] } @$kw), "a keyword search for \"$word\" from the form finds it too", count(scalar(@$kw), 'result', 'results'));

    # the filters: language pair and dates (a "to" date takes its whole day), and one that excludes
    my $day = substr($msgs[1]{created_at}, 0, 10);
    go("#/search?q=$word&mode=keyword&source_lang=en&target_lang=es&from=$day&to=$day");
    wait_js('filtered results', "/result/.test(document.getElementById('search-status')?.textContent || '') && !/Searching/.test(document.getElementById('search-status').textContent)");
    my $in = js("return [...document.querySelectorAll('#results [data-message-id]')].map(e => e.dataset.messageId)");
    go("#/search?q=$word&mode=keyword&source_lang=en&target_lang=fr&from=$day&to=$day");
    wait_js('no results', "/^0 results/.test(document.getElementById('search-status')?.textContent || '')");
    ok((grep { $_ eq $mids[1] } @$in), "the filters: en to es from $day to $day finds it, en to fr finds nothing", count(scalar(@$in), 'result', 'results'));

    # 5. rename a session
    go("#/sessions/$other->{id}");
    wait_js('the session to rename', "document.querySelector('#rename-form')");
    type_into('#rename-form input[name=title]', "Renamed $tag");
    click('#rename-form button');
    wait_js('the new title', "document.querySelector('h1').textContent === 'Renamed $tag'");
    ok(api('GET', "/sessions/$other->{id}")->{title} eq "Renamed $tag", 'rename: PATCH title, the API has the new title');
    click('#audio-enabled');
    wait_js('the audio switch', "document.getElementById('audio-enabled').checked && !document.getElementById('audio-enabled').disabled");
    ok(api('GET', "/sessions/$other->{id}")->{audio_enabled}, 'the audio switch: PATCH audio_enabled');

    # a file instead of the microphone, into that session (now with audio)
    wd('POST', '/element/' . el('#talk-file') . '/value', { text => "$tmp/seed2.wav" });
    wait_js('the picked file', "!document.getElementById('talk-send').disabled");
    click('#talk-send');
    wait_js('the message from the file', "document.querySelectorAll('#messages [data-message-id]').length === 1", 30);
    my $fm = api('GET', "/sessions/$other->{id}/messages")->{data}[0];
    ok($fm && $fm->{has_audio} && js("return !!document.querySelector('#messages audio')"),
       'talk: a picked WAV file goes through the pipeline too, and is a message with audio', '"' . ($fm->{source_text} // '') . '"');

    # a new session from the form on the list
    go('#/sessions');
    wait_js('the new-session form', "document.getElementById('new-session')");
    type_into('#new-session input[name=title]', "Created $tag");
    click('#new-session button[type=submit]');
    wait_js('the created session', "/^#\\/sessions\\/[0-9a-f-]{36}\$/.test(location.hash) && document.querySelector('h1').textContent === 'Created $tag'");
    my ($created) = js("return location.hash") =~ m{([0-9a-f-]{36})};
    push @seeded, $created;
    my $cs = api('GET', "/sessions/$created");
    ok($cs->{source_lang} eq 'en' && $cs->{target_lang} eq 'es' && $cs->{audio_enabled}, 'a session created from the form (en to es, audio on) opens');

    # 6. delete one, through the confirmation
    go("#/sessions/$doomed->{id}");
    wait_js('the session to delete', "document.querySelector('#delete-session')");
    click('#delete-session');
    wait_js('the confirmation', "document.getElementById('confirm-dialog').open");
    shot('delete-confirm');
    click('#confirm-ok');
    wait_js('the list after the deletion', "location.hash === '#/sessions' && document.querySelectorAll('[data-session-id]').length > 0");
    my $gone = $http->request('GET', "$o{base}$prefix/sessions/$doomed->{id}", { headers => $o{key} ? { Authorization => "Bearer $o{key}" } : {} });
    ok($gone->{status} == 404 && !js("return !!document.querySelector('[data-session-id=\"$doomed->{id}\"]')"),
       'delete with confirmation: the session is gone (404) and not listed');
    @seeded = grep { $_ ne $doomed->{id} } @seeded;

    # 7. an error in words: an unknown session
    go('#/sessions/01900000-0000-7000-8000-000000000000');
    wait_js('the error', "document.querySelector('main .error')");
    ok(js("return document.querySelector('main .error').textContent") =~ /no such session/, 'an API error is shown in words',
       js("return document.querySelector('main .error').textContent"));

    # 8. talk: record from the (fake) microphone, send, see the answer and the new message
    go("#/sessions/$talk->{id}");
    wait_js('the talk panel', "document.querySelectorAll('#messages [data-message-id]').length === 3 && document.getElementById('talk-record')");
    click('#talk-record');
    wait_js('recording', "document.getElementById('talk-record').textContent === 'Stop'", 10);
    sleep 3.5;
    click('#talk-record');
    wait_js('the recorded clip', "!document.getElementById('talk-send').disabled", 10);
    my $clip = js("return document.getElementById('talk-status').textContent");
    my $peak = js("return Number(document.querySelector('.talk meter').dataset.max)");
    ok($peak > 0.05, 'talk: the microphone (a WAV as the fake device) was captured as PCM and encoded as a WAV', "$clip peak level $peak");
    click('#talk-send');
    wait_js('the new message', "document.querySelectorAll('#messages [data-message-id]').length === 4", 30);
    my $answer = js("return [document.getElementById('answer-transcript')?.textContent, document.getElementById('answer-translation')?.textContent, !!document.getElementById('answer-audio')]");
    my $new = js("const li = [...document.querySelectorAll('#messages [data-message-id]')].pop(); return [li.dataset.messageId, li.querySelector('.source p').textContent, !!li.querySelector('audio')]");
    my $m = message_of($talk->{id}, $new->[0]);
    ok($m && $m->{has_audio} && $new->[2], 'talk: the recording went through the pipeline and is a new message with its audio',
       "heard \"$answer->[0]\", translated \"$answer->[1]\"" . ($answer->[2] ? ', answer audio playable' : ''));
    if ($m && $m->{has_audio}) {
        my $rec = ogg_duration($m->{audio_url});
        my $d = js_async(<<'JS', $new->[0]);
const done = arguments[arguments.length - 1];
const a = document.querySelector('#m-' + arguments[0] + ' audio');
const go = () => done(a.duration);
if (a.readyState >= 1 && isFinite(a.duration)) go(); else { a.addEventListener('loadedmetadata', go, { once: true }); a.addEventListener('error', () => done(-1)); }
JS
        ok(abs($d - $rec) < 0.1 && $rec > 2.5, 'talk: the new message\'s stored audio is the recording and plays in the page',
           sprintf('duration %.3f s, stored %.3f s', $d, $rec));
    }
    js("window.scrollTo(0, 0)");
    wd('POST', '/window/rect', { width => 1100, height => 1400 });
    shot('viewer');                   # the picture in README.md (docs/viewer.png), by hand
    wd('POST', '/window/rect', { width => 1280, height => 900 });
    js("document.querySelector('.talk').scrollIntoView({ block: 'start' })");
    shot('talk');
    js("document.querySelector('#messages [data-message-id]:last-child').scrollIntoView({ block: 'end' })");
    shot('talk-message');
    if (($m->{model_used} // '') =~ /pocketsphinx/) {
        ok(($m->{source_text} // '') =~ /tomorrow/i, 'talk: the demo pipeline heard what the fake microphone said', "\"$m->{source_text}\"");
    }
    # and found again by search (hybrid: full text and, once embedded, the vector)
    my ($said) = sort { length $b <=> length $a } grep { length > 3 } split /[^a-z]+/, lc($m->{source_text} // '');
    if ($said) {
        wait_until('the new message\'s embedding', 30, sub { my $x = message_of($talk->{id}, $m->{id}); $x && $x->{embedding_status} eq 'ready' });
        go("#/search?q=$said&mode=hybrid");
        wait_js('hybrid results', "/result/.test(document.getElementById('search-status')?.textContent || '') && !/Searching/.test(document.getElementById('search-status').textContent)");
        my $found = js("return [...document.querySelectorAll('#results [data-message-id]')].map(e => e.dataset.messageId)");
        ok((grep { $_ eq $m->{id} } @$found), "talk: the new message is found again by a hybrid search for \"$said\"", count(scalar(@$found), 'result', 'results'));
        go("#/sessions/$talk->{id}?m=$m->{id}");
        wait_js('the new message', "document.querySelector('#m-$m->{id}.target')");
    }

    # 9. retention settings
    go('#/settings');
    wait_js('the settings', "document.getElementById('retention-current')");
    my $before = api('GET', '/settings/retention');
    js("const f = document.getElementById('retention-forever'); if (f.checked) f.click();");
    type_into('#retention-days', '45');
    click('#retention-form button[type=submit]');
    wait_js('saved', "/45 days/.test(document.getElementById('retention-current').textContent)");
    ok(api('GET', '/settings/retention')->{retention_days} == 45, 'retention: PUT from the settings form', 'was ' . ($before->{retention_days} // 'forever'));
    shot('settings');
    api('PUT', '/settings/retention', { retention_days => $before->{retention_days} });

    # 10. phone width, keyboard
    wd('POST', '/window/rect', { width => 390, height => 844 });
    go("#/sessions/$talk->{id}");
    wait_js('the session at phone width', "document.querySelectorAll('#messages [data-message-id]').length === 4");
    my $overflow = js("return document.documentElement.scrollWidth - document.documentElement.clientWidth");
    ok($overflow <= 0, 'phone width (390 px): nothing wider than the screen', "overflow $overflow px");
    shot('phone');
    my $tabbable = js("return [...document.querySelectorAll('a[href], button, input, select, audio[controls]')].filter(e => !e.disabled && e.offsetParent !== null && e.tabIndex >= 0).length");
    my $divclicks = js("return [...document.querySelectorAll('div[onclick], span[onclick]')].length");
    ok($tabbable > 10 && $divclicks == 0, 'keyboard: controls are links, buttons and labelled inputs', "$tabbable focusable controls");
    go('#/sessions');
    wait_js('the list at phone width', "document.querySelectorAll('[data-session-id]').length > 0");
    shot('phone-sessions');

    # 11. the browser's console: no errors but the 404 that step 7 asked for
    my $log = wd('POST', '/se/log', { type => 'browser' });
    my @bad = grep { $_->{level} eq 'SEVERE' && $_->{message} !~ /status of 404/ } @$log;
    ok(!@bad, 'no errors in the browser console', @bad ? join(' | ', map { $_->{message} } @bad[0 .. ($#bad < 2 ? $#bad : 2)]) : count(scalar(@$log), 'entry', 'entries'));
    1;
};
if (!$run) {
    my $err = $@ || 'failed';
    chomp $err;
    ok(0, "the run stopped: $err");
    eval { shot('failure') } if $sess;
}
print "1..$n\n";
exit($failed ? 1 : 0);
