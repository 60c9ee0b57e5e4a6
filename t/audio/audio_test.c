
/*
 * Tests of src/audio: encodes the fixtures, checks the results with
 * opus-tools, breaks inputs every way we know.  Prints TAP.
 *
 *     audio_test FIXTURES_DIR WORK_DIR
 */


#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/wait.h>

#include "../../src/audio/chathistory_audio_int.h"


#define MULTIPART_TYPE  "multipart/form-data; boundary=audio-fixture-7f3a"


typedef struct {
    unsigned char  *data;
    size_t          len;
} blob_t;


typedef struct {
    const char     *file;
    const char     *type;
    unsigned        channels;
} good_t;


typedef struct {
    const char     *file;
    const char     *type;
    const char     *reason;
} bad_t;


static const char  *fixtures;
static const char  *work;
static int          tests;
static int          have_tools;


static const good_t  goods[] = {
    { "pcm16-mono-16k.wav", "audio/wav", 1 },
    { "pcm16-stereo-44k1.wav", "audio/x-wav", 2 },
    { "pcm24-mono-48k.wav", "audio/wave", 1 },
    { "float32-mono-22k05.wav", "audio/vnd.wave", 1 },
    { "pcm16-mono-8k.wav", NULL, 1 },
    { "multipart-one-wav.txt", MULTIPART_TYPE, 1 },
    { NULL, NULL, 0 }
};


static const bad_t  bads[] = {
    { "broken-truncated.wav", "audio/wav", "truncated data chunk" },
    { "broken-chunk-size.wav", "audio/wav", "truncated fmt chunk" },
    { "broken-8bit.wav", "audio/wav", "unsupported sample format 8-bit" },
    { "broken-text.wav", "audio/wav", "not a WAV file" },
    { "broken-text.wav", NULL, "neither a WAV nor an Ogg file" },
    { "broken-truncated.opus", "audio/ogg", "truncated ogg" },
    { "broken-crc.opus", "audio/ogg", "bad ogg page checksum" },
    { "broken-multipart-two-audio.txt", MULTIPART_TYPE,
      "several audio parts in multipart body" },
    { "pcm16-mono-8k.wav", "text/plain", "unsupported content type" },
    { "speech.opus", "audio/wav", "not a WAV file" },
    { NULL, NULL, NULL }
};


static int
ok(int cond, const char *fmt, ...)
{
    va_list  args;

    printf("%sok %d - ", cond ? "" : "not ", ++tests);
    va_start(args, fmt);
    vprintf(fmt, args);
    va_end(args);
    printf("\n");
    fflush(stdout);

    return cond;
}


static void
skip(const char *what, const char *why)
{
    printf("ok %d - %s # skip %s\n", ++tests, what, why);
}


static blob_t
load_path(const char *path)
{
    long    n;
    FILE   *f;
    blob_t  b;

    f = fopen(path, "rb");
    if (f == NULL) {
        printf("Bail out! cannot open %s\n", path);
        exit(1);
    }

    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);

    b.len = (size_t) n;
    b.data = malloc(b.len ? b.len : 1);

    if (b.data == NULL || fread(b.data, 1, b.len, f) != b.len) {
        printf("Bail out! cannot read %s\n", path);
        exit(1);
    }

    fclose(f);

    return b;
}


static blob_t
load(const char *name)
{
    char  path[1024];

    snprintf(path, sizeof(path), "%s/%s", fixtures, name);

    return load_path(path);
}


/* Recomputes the CRC of every page, so that flips reach the parser. */
static void
fix_crcs(unsigned char *p, size_t len)
{
    size_t    pos, i, page, n;
    uint32_t  crc, table[256], r;
    int       k;

    for (i = 0; i < 256; i++) {
        for (r = (uint32_t) i << 24, k = 0; k < 8; k++) {
            r = (r & 0x80000000) ? (r << 1) ^ 0x04c11db7 : r << 1;
        }

        table[i] = r;
    }

    for (pos = 0; len - pos >= 27 && memcmp(p + pos, "OggS", 4) == 0;
         pos += page)
    {
        n = p[pos + 26];

        if (len - pos < 27 + n) {
            return;
        }

        for (page = 27 + n, i = 0; i < n; i++) {
            page += p[pos + 27 + i];
        }

        if (len - pos < page) {
            return;
        }

        memset(p + pos + 22, 0, 4);

        for (crc = 0, i = 0; i < page; i++) {
            crc = (crc << 8) ^ table[((crc >> 24) ^ p[pos + i]) & 0xff];
        }

        for (i = 0; i < 4; i++) {
            p[pos + 22 + i] = (unsigned char) (crc >> (8 * i));
        }
    }
}


static void
save(const char *path, const unsigned char *p, size_t len)
{
    FILE  *f;

    f = fopen(path, "wb");
    if (f == NULL || fwrite(p, 1, len, f) != len || fclose(f) != 0) {
        printf("Bail out! cannot write %s\n", path);
        exit(1);
    }
}


/* Runs a command; returns its exit status and what it printed. */
static int
run(const char *cmd, char *output, size_t size)
{
    int     status;
    size_t  n, total;
    FILE   *p;

    p = popen(cmd, "r");
    if (p == NULL) {
        return -1;
    }

    total = 0;

    while ((n = fread(output + total, 1, size - 1 - total, p)) > 0) {
        total += n;

        if (total == size - 1) {
            break;
        }
    }

    output[total] = '\0';
    status = pclose(p);

    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}


static int
encode(const blob_t *b, const char *type, chathistory_audio_out_t *out,
    unsigned *ms, char *err)
{
    chathistory_audio_opts_t  opts = CHATHISTORY_AUDIO_OPTS_DEFAULT;

    opts.comment = "ENCODER=chathistory audio_test";

    return chathistory_audio_encode(b->data, b->len, type, &opts, out, ms,
                                    err, 128);
}


/* The WAV's duration in seconds and its channels, from our own parser. */
static double
wav_duration(const unsigned char *p, size_t len, unsigned *channels)
{
    char       err[128];
    cha_wav_t  wav;

    if (cha_wav_parse(p, len, &wav, err, sizeof(err)) != 0) {
        return -1;
    }

    *channels = wav.channels;

    return (double) wav.frames / wav.rate;
}


static void
test_good(const good_t *g)
{
    int                       rc;
    char                      err[128], path[1024], wav_path[1100];
    char                      cmd[4096], output[16384];
    blob_t                    b, dec, in;
    double                    want, got;
    unsigned                  ms, ch, dch;
    cha_ogg_info_t            info;
    const unsigned char      *part;
    chathistory_audio_out_t   out;

    b = load(g->file);
    err[0] = '\0';

    rc = encode(&b, g->type, &out, &ms, err);
    if (!ok(rc == 0, "%s encodes (%s)", g->file, rc ? err : "no error")) {
        free(b.data);
        return;
    }

    /* the WAV that went in: the fixture itself or its multipart part */
    in = b;
    part = (const unsigned char *) strstr((const char *) b.data, "RIFF");
    if (g->type != NULL && strncmp(g->type, "multipart/", 10) == 0
        && part != NULL)
    {
        in.data = (unsigned char *) part;
        in.len = b.len - (part - b.data);
    }

    want = wav_duration(in.data, in.len, &ch);

    /* the multipart part ends before the closing delimiter */
    if (want < 0 && part != NULL) {
        in.len = (size_t) (strstr((const char *) part + 44, "\r\n--audio")
                           - (const char *) part);
        want = wav_duration(in.data, in.len, &ch);
    }

    ok(ms >= want * 1000 - 1 && ms <= want * 1000 + 1,
       "%s duration %u ms, input %.3f s", g->file, ms, want);

    rc = cha_ogg_check(out.data, out.len, &info, err, sizeof(err));
    ok(rc == 0 && info.channels == g->channels
       && info.samples == (uint64_t) (want * 48000 + 0.5),
       "%s output passes our own check: %u channels, %llu samples (%s)",
       g->file, info.channels, (unsigned long long) info.samples,
       rc ? err : "ok");

    ok(out.len < (size_t) (want * CHATHISTORY_AUDIO_BITRATE / 8 * 2) + 4096,
       "%s output size %zu bounded by duration", g->file, out.len);

    snprintf(path, sizeof(path), "%s/%s.opus", work, g->file);
    save(path, out.data, out.len);
    chathistory_audio_out_free(&out);
    free(b.data);

    if (!have_tools) {
        skip("opusinfo and opusdec", "opus-tools not installed");
        return;
    }

    snprintf(cmd, sizeof(cmd), "opusinfo '%s' 2>&1", path);
    rc = run(cmd, output, sizeof(output));
    ok(rc == 0 && strstr(output, "WARNING") == NULL
       && strstr(output, "ERROR") == NULL
       && strstr(output, "arning") == NULL && strstr(output, "rror") == NULL,
       "%s output passes opusinfo", g->file);

    if (rc != 0 || strstr(output, "arning") || strstr(output, "rror")) {
        printf("# %s\n", output);
    }

    snprintf(wav_path, sizeof(wav_path), "%s.wav", path);
    snprintf(cmd, sizeof(cmd), "opusdec --quiet '%s' '%s' 2>&1", path,
             wav_path);
    rc = run(cmd, output, sizeof(output));

    dec.data = NULL;
    got = -1;
    dch = 0;

    if (rc == 0) {
        dec = load_path(wav_path);
        got = wav_duration(dec.data, dec.len, &dch);
        free(dec.data);
    }

    ok(rc == 0 && got >= want - 0.020 && got <= want + 0.020,
       "%s decodes to %.3f s, input %.3f s", g->file, got, want);
    ok(dch == g->channels, "%s decodes to %u channels", g->file, dch);
}


static void
test_ogg_copy(void)
{
    int                       rc;
    char                      err[128];
    blob_t                    b;
    unsigned                  ms;
    const char               *types[] = { "audio/ogg", "audio/opus",
                                          "application/ogg", NULL,
                                          "application/octet-stream" };
    size_t                    i;
    chathistory_audio_out_t   out;

    b = load("speech.opus");

    for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        rc = encode(&b, types[i], &out, &ms, err);
        ok(rc == 0 && out.len == b.len && memcmp(out.data, b.data, b.len) == 0
           && ms >= 2555 && ms <= 2558,
           "ogg opus as %s returned unchanged, %u ms (%s)",
           types[i] ? types[i] : "(none)", ms, rc ? err : "ok");
        chathistory_audio_out_free(&out);
    }

    free(b.data);
}


static void
test_bad(const bad_t *t)
{
    int                       rc;
    char                      err[128];
    blob_t                    b;
    unsigned                  ms;
    chathistory_audio_out_t   out;

    b = load(t->file);
    err[0] = '\0';
    rc = encode(&b, t->type, &out, &ms, err);
    ok(rc == -1 && out.data == NULL && strstr(err, t->reason) != NULL,
       "%s as %s fails: \"%s\"", t->file, t->type ? t->type : "(none)", err);
    free(b.data);
}


/* A WAV in memory; extra chunks go between fmt and data. */
static blob_t
make_wav(unsigned format, unsigned channels, unsigned rate, unsigned bits,
    int extensible, size_t frames, const char *extra, size_t extra_len,
    uint32_t data_size)
{
    size_t          i, fmt_len, data_len, n;
    blob_t          b;
    unsigned char  *p;
    static const unsigned char  tail[14] = {
        0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00,
        0x00, 0xaa, 0x00, 0x38, 0x9b, 0x71
    };

    fmt_len = extensible ? 40 : 16;
    data_len = frames * channels * bits / 8;
    n = 12 + 8 + fmt_len + extra_len + 8 + data_len;

    b.data = calloc(1, n);
    b.len = n;
    p = b.data;

#define PUT16(v)  do { *p++ = (v) & 0xff; *p++ = ((v) >> 8) & 0xff; } while (0)
#define PUT32(v)  do { PUT16((v) & 0xffff); PUT16(((v) >> 16) & 0xffff); }   \
                  while (0)

    memcpy(p, "RIFF", 4); p += 4;
    PUT32((uint32_t) (n - 8));
    memcpy(p, "WAVEfmt ", 8); p += 8;
    PUT32((uint32_t) fmt_len);
    PUT16(extensible ? 0xfffe : format);
    PUT16(channels);
    PUT32(rate);
    PUT32(rate * channels * bits / 8);
    PUT16(channels * bits / 8);
    PUT16(bits);

    if (extensible) {
        PUT16(22);
        PUT16(bits);
        PUT32(0);
        PUT16(format);
        memcpy(p, tail, 14); p += 14;
    }

    if (extra_len > 0) {
        memcpy(p, extra, extra_len);
        p += extra_len;
    }
    memcpy(p, "data", 4); p += 4;
    PUT32(data_size);

    /* a 440 Hz-ish sawtooth, loud enough to be audio */
    for (i = 0; i < frames * channels; i++) {
        double  v = ((double) (i / channels % 109) / 109.0 - 0.5) * 0.8;

        if (format == 3 && bits == 32) {
            float     f = (float) v;
            uint32_t  u;

            memcpy(&u, &f, 4);
            PUT32(u);

        } else if (bits == 16) {
            PUT16((uint16_t) (int16_t) (v * 32767));

        } else if (bits == 24) {
            int32_t  s = (int32_t) (v * 8388607);

            *p++ = s & 0xff; *p++ = (s >> 8) & 0xff; *p++ = (s >> 16) & 0xff;

        } else if (bits == 32) {
            PUT32((uint32_t) (int32_t) (v * 2147483647.0));

        } else {
            *p++ = (unsigned char) (v * 127 + 128);
        }
    }

    return b;
}


static void
expect(blob_t b, const char *type, const char *reason, unsigned channels,
    unsigned want_ms, const char *what)
{
    int                       rc;
    char                      err[128];
    unsigned                  ms;
    cha_ogg_info_t            info;
    chathistory_audio_out_t   out;

    err[0] = '\0';
    rc = encode(&b, type, &out, &ms, err);

    if (reason != NULL) {
        ok(rc == -1 && strstr(err, reason) != NULL, "%s fails: \"%s\"", what,
           err);

    } else {
        memset(&info, 0, sizeof(info));

        if (rc == 0) {
            rc = cha_ogg_check(out.data, out.len, &info, err, sizeof(err));
        }

        ok(rc == 0 && info.channels == channels && ms == want_ms,
           "%s encodes: %u ms, %u channels (%s)", what, ms, info.channels,
           rc ? err : "ok");
    }

    chathistory_audio_out_free(&out);
    free(b.data);
}


static void
test_wav_variants(void)
{
    blob_t  b, m;

    expect(make_wav(3, 2, 12000, 32, 1, 12000, NULL, 0, 12000 * 8),
           "audio/wav", NULL, 2, 1000, "extensible float stereo 12 kHz");
    expect(make_wav(1, 1, 32000, 32, 0, 16000, NULL, 0, 16000 * 4),
           "audio/wav", NULL, 1, 500, "32-bit integer PCM 32 kHz");
    expect(make_wav(1, 2, 96000, 24, 1, 96000, NULL, 0, 96000 * 6),
           "audio/wav", NULL, 2, 1000, "extensible 24-bit stereo 96 kHz");
    expect(make_wav(1, 1, 192000, 16, 0, 19200, NULL, 0, 19200 * 2),
           "audio/wav", NULL, 1, 100, "16-bit 192 kHz");
    expect(make_wav(1, 1, 11025, 16, 0, 11025, NULL, 0, 11025 * 2),
           "audio/wav", NULL, 1, 1000, "16-bit 11.025 kHz");
    expect(make_wav(1, 6, 48000, 16, 1, 4800, NULL, 0, 4800 * 12),
           "audio/wav", NULL, 1, 100, "5.1 downmixed to mono");
    expect(make_wav(1, 1, 16000, 16, 0, 1, NULL, 0, 2),
           "audio/wav", NULL, 1, 0, "a single sample");
    expect(make_wav(1, 1, 16000, 16, 0, 8000,
                    "LIST\x05\0\0\0abcde\0JUNK\x04\0\0\0wxyz", 26, 16000),
           "audio/wav", NULL, 1, 500, "odd-sized LIST, JUNK, before data");
    expect(make_wav(1, 1, 16000, 16, 0, 8000, NULL, 0, 0xffffffff),
           "audio/wav", NULL, 1, 500, "data size 0xffffffff (streaming)");

    /* RF64: sizes in a ds64 chunk, 0xffffffff in the RIFF and data ones */
    b = make_wav(1, 1, 16000, 16, 0, 8000,
                 "ds64\x1c\0\0\0" "\0\0\0\0\0\0\0\0" "\x80\x3e\0\0\0\0\0\0"
                 "\0\0\0\0\0\0\0\0" "\0\0\0\0", 36, 0xffffffff);
    memcpy(b.data, "RF64\xff\xff\xff\xff", 8);
    expect(b, "audio/wav", NULL, 1, 500, "RF64 with a ds64 chunk");

    b = make_wav(1, 1, 16000, 16, 0, 8000, NULL, 0, 16001);
    b.len--;
    expect(b, "audio/wav", "truncated data chunk", 1, 0, "data one byte short");

    b = make_wav(1, 1, 16000, 16, 0, 8001, NULL, 0, 16001);
    expect(b, "audio/wav", NULL, 1, 500, "odd data size, last half frame");

    b = make_wav(1, 1, 16000, 16, 0, 8000, NULL, 0, 16000);
    memcpy(b.data + 4, "\xff\xff\xff\xff", 4);
    expect(b, "audio/wav", NULL, 1, 500, "lying RIFF size");

    expect(make_wav(1, 1, 16000, 16, 0, 0, NULL, 0, 0),
           "audio/wav", "no audio samples", 1, 0, "empty data chunk");
    expect(make_wav(3, 1, 16000, 64, 0, 100, NULL, 0, 800),
           "audio/wav", "unsupported sample format 64-bit float", 1, 0,
           "64-bit float");
    expect(make_wav(1, 1, 7999, 16, 0, 100, NULL, 0, 200),
           "audio/wav", "unsupported sample rate 7999", 1, 0, "7999 Hz");
    expect(make_wav(1, 9, 16000, 16, 0, 100, NULL, 0, 1800),
           "audio/wav", "unsupported channel count 9", 1, 0, "9 channels");
    expect(make_wav(2, 1, 16000, 16, 0, 100, NULL, 0, 200),
           "audio/wav", "unsupported format tag 0x0002", 1, 0, "ADPCM");

    b = make_wav(1, 1, 16000, 16, 0, 100, NULL, 0, 200);
    memcpy(b.data + 12, "data", 4);
    expect(b, "audio/wav", "several data chunks", 1, 0, "two data chunks");

    /* data first, fmt after it */
    b = make_wav(1, 1, 16000, 16, 0, 800, NULL, 0, 1600);
    m.len = b.len;
    m.data = malloc(m.len);
    memcpy(m.data, b.data, 12);
    memcpy(m.data + 12, b.data + 36, 1608);
    memcpy(m.data + 12 + 1608, b.data + 12, 24);
    free(b.data);
    expect(m, "audio/wav", NULL, 1, 50, "data chunk before fmt chunk");

    b = make_wav(1, 1, 16000, 16, 0, 800, NULL, 0, 1600);
    b.len = 36 + 8 + 1600;
    memmove(b.data + 12, b.data + 36, 1608);
    b.len = 12 + 1608;
    expect(b, "audio/wav", "missing fmt chunk", 1, 0, "no fmt chunk");

    b = make_wav(1, 1, 16000, 16, 0, 100, NULL, 0, 200);
    b.len = 36;
    expect(b, "audio/wav", "missing data chunk", 1, 0, "no data chunk");
}


static void
test_multipart(void)
{
    blob_t      b;
    size_t      len;
    const char *wav_hdr;

    static const char  lf[] =
        "--xyz\nContent-Disposition: form-data; name=\"a\"; "
        "filename=\"A.WAV\"\nContent-Type: application/octet-stream\n\n";
    static const char  none[] =
        "--xyz\r\nContent-Disposition: form-data; name=\"t\"\r\n\r\nhello\r\n"
        "--xyz--\r\n";
    static const char  unclosed[] =
        "--xyz\r\nContent-Type: audio/wav\r\n\r\nRIFF";

    /* LF line ends, a filename in capitals, a quoted boundary */
    wav_hdr = (const char *) make_wav(1, 1, 8000, 16, 0, 800, NULL, 0,
                                      1600).data;
    len = strlen(lf) + 1644 + 8;
    b.data = malloc(len);
    b.len = len;
    memcpy(b.data, lf, strlen(lf));
    memcpy(b.data + strlen(lf), wav_hdr, 1644);
    memcpy(b.data + strlen(lf) + 1644, "\n--xyz--", 8);
    free((void *) wav_hdr);
    expect(b, "Multipart/Form-Data; charset=utf-8; boundary=\"xyz\"", NULL, 1,
           100, "multipart with LF line ends and a quoted boundary");

    b.len = strlen(none);
    b.data = (unsigned char *) strdup(none);
    expect(b, "multipart/form-data; boundary=xyz",
           "no audio part in multipart body", 1, 0, "multipart without audio");

    b.len = strlen(unclosed);
    b.data = (unsigned char *) strdup(unclosed);
    expect(b, "multipart/form-data; boundary=xyz", "truncated multipart", 1, 0,
           "multipart without its closing delimiter");

    b.len = strlen(none);
    b.data = (unsigned char *) strdup(none);
    expect(b, "multipart/form-data; boundary=abc",
           "no multipart boundary in body", 1, 0, "multipart, wrong boundary");

    b.len = strlen(none);
    b.data = (unsigned char *) strdup(none);
    expect(b, "multipart/form-data", "bad multipart boundary", 1, 0,
           "multipart without boundary parameter");
}


static void
test_options(void)
{
    int                       rc;
    char                      err[128];
    blob_t                    b;
    unsigned                  ms;
    chathistory_audio_opts_t  opts = CHATHISTORY_AUDIO_OPTS_DEFAULT;
    chathistory_audio_out_t   out, out2;

    b = load("pcm16-mono-16k.wav");

    opts.max_input = b.len - 1;
    rc = chathistory_audio_encode(b.data, b.len, "audio/wav", &opts, &out, &ms,
                                  err, sizeof(err));
    ok(rc == -1 && strcmp(err, "audio too large") == 0, "max_input: \"%s\"",
       err);

    opts.max_input = 0;
    opts.bitrate = 1000;
    rc = chathistory_audio_encode(b.data, b.len, "audio/wav", &opts, &out, &ms,
                                  err, sizeof(err));
    ok(rc == -1 && strstr(err, "bad bitrate") != NULL, "bitrate: \"%s\"", err);

    opts.bitrate = 24000;
    opts.complexity = 11;
    rc = chathistory_audio_encode(b.data, b.len, "audio/wav", &opts, &out, &ms,
                                  NULL, 0);
    ok(rc == -1, "complexity 11 refused, NULL err is fine");

    rc = chathistory_audio_encode(b.data, b.len, "audio/wav", NULL, &out, &ms,
                                  err, sizeof(err));
    opts.bitrate = 64000;
    opts.complexity = 10;
    rc |= chathistory_audio_encode(b.data, b.len, "audio/wav", &opts, &out2,
                                   &ms, err, sizeof(err));
    ok(rc == 0 && out2.len > out.len * 3 / 2,
       "64 kbit/s output (%zu) larger than 24 kbit/s (%zu)", out2.len, out.len);

    chathistory_audio_out_free(&out);
    chathistory_audio_out_free(&out2);
    free(b.data);
}


/* Prefixes and byte flips: any answer will do, crashes and leaks won't. */
static void
test_fuzz(void)
{
    int                       rc, good;
    char                      err[128];
    size_t                    n, i, k, total;
    blob_t                    b, small, m;
    unsigned                  ms, seed;
    chathistory_audio_out_t   out;

    b = load("pcm16-mono-8k.wav");
    good = 0;
    total = 0;

    for (n = 0; n <= b.len; n += (n + 97 > b.len && n < b.len) ? b.len - n : 97)
    {
        rc = chathistory_audio_encode(b.data, n, "audio/wav", NULL, &out, &ms,
                                      err, sizeof(err));
        good += (rc == 0);
        total++;
        chathistory_audio_out_free(&out);

        if (n == b.len) {
            break;
        }
    }

    ok(good == 1, "%zu WAV prefixes: only the whole file encodes", total);
    free(b.data);

    b = load("speech.opus");
    good = 0;
    total = 0;

    for (n = 0; n < b.len; n += 97) {
        rc = chathistory_audio_encode(b.data, n, "audio/ogg", NULL, &out, &ms,
                                      err, sizeof(err));
        good += (rc == 0);
        total++;
        chathistory_audio_out_free(&out);
    }

    ok(good == 0, "%zu Ogg prefixes all refused", total);

    /* flips in the Ogg file, half of the runs with the CRCs fixed after */
    seed = 12345;
    m.data = malloc(b.len);
    m.len = b.len;
    good = 0;

    for (i = 0; i < 400; i++) {
        memcpy(m.data, b.data, b.len);

        for (k = 0; k < 1 + i % 4; k++) {
            seed = seed * 1103515245 + 12345;
            m.data[(seed >> 8) % (i % 4 < 2 ? 200 : m.len)] ^= 1 << (seed % 8);
        }

        if (i % 2) {
            fix_crcs(m.data, m.len);
        }

        rc = chathistory_audio_encode(m.data, m.len, NULL, NULL, &out, &ms,
                                      err, sizeof(err));
        good += (rc == 0);
        chathistory_audio_out_free(&out);
    }

    ok(1, "400 Ogg byte-flip runs survived (%d accepted)", good);
    free(m.data);
    free(b.data);

    /* flips in a small WAV (header-heavy) and in the multipart fixture */
    small = make_wav(1, 2, 44100, 16, 0, 2205, "LIST\x04\0\0\0abcd", 12,
                     2205 * 4);
    m.data = malloc(small.len);
    m.len = small.len;
    good = 0;

    for (i = 0; i < 600; i++) {
        memcpy(m.data, small.data, small.len);

        for (k = 0; k < 1 + i % 3; k++) {
            seed = seed * 1103515245 + 12345;
            m.data[(seed >> 8) % (i % 4 ? 80 : m.len)] ^= 1 << (seed % 8);
        }

        rc = chathistory_audio_encode(m.data, m.len, NULL, NULL, &out, &ms,
                                      err, sizeof(err));
        good += (rc == 0);
        chathistory_audio_out_free(&out);
    }

    ok(1, "600 WAV byte-flip runs survived (%d encoded)", good);
    free(m.data);
    free(small.data);

    b = load("multipart-one-wav.txt");
    m.data = malloc(b.len);
    m.len = b.len;

    for (i = 0; i < 300; i++) {
        memcpy(m.data, b.data, b.len);

        for (k = 0; k < 1 + i % 3; k++) {
            seed = seed * 1103515245 + 12345;
            m.data[(seed >> 8) % 400] ^= 1 << (seed % 8);
        }

        chathistory_audio_encode(m.data, m.len, MULTIPART_TYPE, NULL, &out,
                                 &ms, err, sizeof(err));
        chathistory_audio_out_free(&out);
    }

    ok(1, "300 multipart byte-flip runs survived");
    free(m.data);
    free(b.data);
}


typedef struct {
    blob_t                    in;
    chathistory_audio_out_t   out;
    int                       rc;
} job_t;


static void *
thread_job(void *arg)
{
    job_t     *job = arg;
    char       err[128];
    unsigned   ms;

    job->rc = chathistory_audio_encode(job->in.data, job->in.len, "audio/wav",
                                       NULL, &job->out, &ms, err, sizeof(err));
    return NULL;
}


/* Encodes in four threads at once: same bytes as one thread alone. */
static void
test_threads(void)
{
    int        same;
    size_t     i;
    job_t      jobs[4];
    pthread_t  tid[4];

    for (i = 0; i < 4; i++) {
        jobs[i].in = load(goods[i].file);
    }

    for (i = 0; i < 4; i++) {
        pthread_create(&tid[i], NULL, thread_job, &jobs[i]);
    }

    for (i = 0; i < 4; i++) {
        pthread_join(tid[i], NULL);
    }

    same = 1;

    for (i = 0; i < 4; i++) {
        job_t  alone = jobs[i];

        thread_job(&alone);
        same &= (jobs[i].rc == 0 && alone.rc == 0
                 && alone.out.len == jobs[i].out.len
                 && memcmp(alone.out.data, jobs[i].out.data, alone.out.len)
                    == 0);
        chathistory_audio_out_free(&alone.out);
        chathistory_audio_out_free(&jobs[i].out);
        free(jobs[i].in.data);
    }

    ok(same, "four threads encode the same bytes as one");
}


int
main(int argc, char **argv)
{
    char         output[256];
    const bad_t  *t;
    const good_t *g;

    if (argc != 3) {
        fprintf(stderr, "usage: %s FIXTURES_DIR WORK_DIR\n", argv[0]);
        return 2;
    }

    fixtures = argv[1];
    work = argv[2];

    have_tools = run("opusinfo -V >/dev/null 2>&1 && opusdec -V 2>&1",
                     output, sizeof(output)) == 0
                 && getenv("AUDIO_TEST_NO_TOOLS") == NULL;

    for (g = goods; g->file != NULL; g++) {
        test_good(g);
    }

    test_ogg_copy();

    for (t = bads; t->file != NULL; t++) {
        test_bad(t);
    }

    test_wav_variants();
    test_multipart();
    test_options();
    test_fuzz();
    test_threads();

    printf("1..%d\n", tests);

    return 0;
}
