#!/usr/bin/perl
# The audio library (src/audio): builds t/audio/audio_test and runs it; it
# prints the TAP.  AUDIO_TEST_VALGRIND=1 runs it under valgrind.

use strict;
use warnings;
use FindBin;
use File::Temp qw(tempdir);

my $dir = $FindBin::Bin;
my $fixtures = "$dir/../fixtures/audio";

my @missing = grep { system("pkg-config --exists $_ 2>/dev/null") != 0 }
    qw(opus ogg speexdsp);
if (@missing) {
    print "1..0 # SKIP missing libraries: @missing "
        . "(apt-get install libopus-dev libogg-dev libspeexdsp-dev)\n";
    exit 0;
}

my $log = `make -s -C '$dir' audio_test 2>&1`;
if ($? != 0) {
    print "1..1\nnot ok 1 - build t/audio/audio_test\n";
    print "# $_\n" for split /\n/, $log;
    exit 1;
}

my $work = tempdir('chathistory-audio-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my @cmd = ("$dir/audio_test", $fixtures, $work);
unshift @cmd, qw(valgrind -q --leak-check=full --errors-for-leak-kinds=all
                 --error-exitcode=1)
    if $ENV{AUDIO_TEST_VALGRIND};

system(@cmd);
exit($? == 0 ? 0 : 1);
