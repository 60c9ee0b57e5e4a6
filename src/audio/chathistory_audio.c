
/*
 * The entry point: decides what the body is and turns it into Ogg Opus.
 */


#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "chathistory_audio_int.h"


#define CHA_BLOCK        4096       /* input frames converted at a time */
#define CHA_MIN_BITRATE  6000
#define CHA_MAX_BITRATE  510000


typedef enum {
    CHA_KIND_UNKNOWN = 0,
    CHA_KIND_WAV,
    CHA_KIND_OGG,
    CHA_KIND_MULTIPART,
    CHA_KIND_SNIFF
} cha_kind_t;


static cha_kind_t cha_kind(const char *type, size_t len);
static cha_kind_t cha_sniff(const unsigned char *p, size_t len);
static int cha_encode_wav(const unsigned char *p, size_t len,
    const chathistory_audio_opts_t *opts, chathistory_audio_out_t *out,
    unsigned *duration_ms, char *err, size_t errlen);
static int cha_feed(cha_opus_enc_t *enc, cha_resampler_t *rs,
    unsigned channels, const float *in, size_t frames, float *buf,
    size_t buf_frames, char *err, size_t errlen);
static int cha_copy_ogg(const unsigned char *p, size_t len,
    chathistory_audio_out_t *out, unsigned *duration_ms, char *err,
    size_t errlen);
static uint32_t cha_serial(const unsigned char *p, size_t len);


int
chathistory_audio_encode(const unsigned char *body, size_t len,
    const char *content_type, const chathistory_audio_opts_t *opts,
    chathistory_audio_out_t *out, unsigned *duration_ms, char *err,
    size_t errlen)
{
    size_t                    type_len;
    cha_kind_t                kind;
    const char               *type;
    chathistory_audio_opts_t  dflt = CHATHISTORY_AUDIO_OPTS_DEFAULT;

    out->data = NULL;
    out->len = 0;
    *duration_ms = 0;

    if (opts == NULL) {
        opts = &dflt;

    } else if (opts->bitrate == 0) {
        dflt.complexity = opts->complexity;
        dflt.max_input = opts->max_input;
        dflt.comment = opts->comment;
        opts = &dflt;
    }

    if (opts->bitrate < CHA_MIN_BITRATE || opts->bitrate > CHA_MAX_BITRATE) {
        cha_error(err, errlen, "bad bitrate %d", opts->bitrate);
        return -1;
    }

    if (opts->complexity < 0 || opts->complexity > 10) {
        cha_error(err, errlen, "bad complexity %d", opts->complexity);
        return -1;
    }

    if (opts->max_input != 0 && len > opts->max_input) {
        cha_error(err, errlen, "audio too large");
        return -1;
    }

    if (body == NULL || len == 0) {
        cha_error(err, errlen, "empty body");
        return -1;
    }

    type = (content_type != NULL) ? content_type : "";
    kind = cha_kind(type, strlen(type));

    if (kind == CHA_KIND_MULTIPART) {
        if (cha_multipart_find(body, len, type, &body, &len, &type, &type_len,
                               err, errlen)
            != 0)
        {
            return -1;
        }

        kind = cha_kind(type, type_len);

        if (kind != CHA_KIND_WAV && kind != CHA_KIND_OGG) {
            kind = CHA_KIND_SNIFF;
        }
    }

    if (kind == CHA_KIND_UNKNOWN) {
        cha_error(err, errlen, "unsupported content type");
        return -1;
    }

    if (kind == CHA_KIND_SNIFF) {
        kind = cha_sniff(body, len);
    }

    switch (kind) {

    case CHA_KIND_WAV:
        return cha_encode_wav(body, len, opts, out, duration_ms, err, errlen);

    case CHA_KIND_OGG:
        return cha_copy_ogg(body, len, out, duration_ms, err, errlen);

    default:
        cha_error(err, errlen, "neither a WAV nor an Ogg file");
        return -1;
    }
}


void
chathistory_audio_out_free(chathistory_audio_out_t *out)
{
    free(out->data);
    out->data = NULL;
    out->len = 0;
}


void
cha_error(char *err, size_t errlen, const char *fmt, ...)
{
    va_list  args;

    if (err == NULL || errlen == 0) {
        return;
    }

    va_start(args, fmt);
    vsnprintf(err, errlen, fmt, args);
    va_end(args);
}


/* What a media type (parameters ignored, any case) says the body is. */
static cha_kind_t
cha_kind(const char *type, size_t len)
{
    size_t  i, n;

    static const struct {
        const char  *name;
        cha_kind_t   kind;
    } types[] = {
        { "audio/wav", CHA_KIND_WAV },
        { "audio/x-wav", CHA_KIND_WAV },
        { "audio/wave", CHA_KIND_WAV },
        { "audio/vnd.wave", CHA_KIND_WAV },
        { "audio/ogg", CHA_KIND_OGG },
        { "audio/opus", CHA_KIND_OGG },
        { "application/ogg", CHA_KIND_OGG },
        { "multipart/form-data", CHA_KIND_MULTIPART },
        { "application/octet-stream", CHA_KIND_SNIFF },
        { "", CHA_KIND_SNIFF }
    };

    if (type == NULL) {
        return CHA_KIND_SNIFF;      /* a multipart part without a type */
    }

    while (len > 0 && (*type == ' ' || *type == '\t')) {
        type++;
        len--;
    }

    for (n = 0; n < len && type[n] != ';' && type[n] != ' '
                && type[n] != '\t'; n++)
    { /* void */ }

    for (i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        if (strlen(types[i].name) == n
            && strncasecmp(types[i].name, type, n) == 0)
        {
            return types[i].kind;
        }
    }

    return CHA_KIND_UNKNOWN;
}


static cha_kind_t
cha_sniff(const unsigned char *p, size_t len)
{
    if (len >= 12 && (memcmp(p, "RIFF", 4) == 0 || memcmp(p, "RF64", 4) == 0)
        && memcmp(p + 8, "WAVE", 4) == 0)
    {
        return CHA_KIND_WAV;
    }

    if (len >= 4 && memcmp(p, "OggS", 4) == 0) {
        return CHA_KIND_OGG;
    }

    return CHA_KIND_UNKNOWN;
}


/*
 * WAV to Ogg Opus in blocks: read as float, resample when the rate is not
 * one Opus takes, encode.  Memory stays a few blocks plus the output.
 */
static int
cha_encode_wav(const unsigned char *p, size_t len,
    const chathistory_audio_opts_t *opts, chathistory_audio_out_t *out,
    unsigned *duration_ms, char *err, size_t errlen)
{
    int               rc;
    float            *in, *buf;
    size_t            pos, n, buf_frames;
    unsigned          channels, rate;
    uint64_t          samples48;
    cha_wav_t         wav;
    cha_opus_enc_t   *enc;
    cha_resampler_t  *rs;

    if (cha_wav_parse(p, len, &wav, err, errlen) != 0) {
        return -1;
    }

    channels = cha_wav_out_channels(&wav);
    rate = cha_resample_rate(wav.rate);

    /* resampling produces at most out/in times the input, plus slack */
    buf_frames = (size_t) CHA_BLOCK * rate / wav.rate + 64;

    rc = -1;
    rs = NULL;
    enc = NULL;
    in = malloc(sizeof(float) * CHA_BLOCK * channels);
    buf = malloc(sizeof(float) * buf_frames * channels);

    if (in == NULL || buf == NULL) {
        cha_error(err, errlen, "out of memory");
        goto done;
    }

    if (rate != wav.rate) {
        rs = cha_resample_create(channels, wav.rate, rate, err, errlen);
        if (rs == NULL) {
            goto done;
        }
    }

    enc = cha_opus_create(rate, channels, wav.rate, opts,
                          cha_serial(p, len), err, errlen);
    if (enc == NULL) {
        goto done;
    }

    for (pos = 0; pos < wav.frames; pos += n) {
        n = wav.frames - pos;

        if (n > CHA_BLOCK) {
            n = CHA_BLOCK;
        }

        cha_wav_read(&wav, pos, n, in);

        if (cha_feed(enc, rs, channels, in, n, buf, buf_frames, err, errlen)
            != 0)
        {
            goto done;
        }
    }

    /* flush the resampler's filter with silence */
    if (rs != NULL
        && cha_feed(enc, rs, channels, NULL, cha_resample_latency(rs), buf,
                    buf_frames, err, errlen)
           != 0)
    {
        goto done;
    }

    samples48 = ((uint64_t) wav.frames * CHA_OPUS_RATE + wav.rate / 2)
                / wav.rate;

    if (cha_opus_finish(enc, samples48, out, err, errlen) != 0) {
        goto done;
    }

    *duration_ms = (unsigned) (((uint64_t) wav.frames * 1000 + wav.rate / 2)
                               / wav.rate);
    rc = 0;

done:

    cha_opus_destroy(enc);
    cha_resample_destroy(rs);
    free(in);
    free(buf);

    return rc;
}


/* Passes frames to the encoder, through the resampler if there is one. */
static int
cha_feed(cha_opus_enc_t *enc, cha_resampler_t *rs, unsigned channels,
    const float *in, size_t frames, float *buf, size_t buf_frames, char *err,
    size_t errlen)
{
    size_t  n, m;

    if (rs == NULL) {
        return cha_opus_write(enc, in, frames, err, errlen);
    }

    while (frames > 0) {
        n = frames;
        m = buf_frames;

        if (cha_resample(rs, in, &n, buf, &m) != 0) {
            cha_error(err, errlen, "resampler failed");
            return -1;
        }

        if (cha_opus_write(enc, buf, m, err, errlen) != 0) {
            return -1;
        }

        if (n == 0 && m == 0) {
            cha_error(err, errlen, "resampler stalled");
            return -1;
        }

        frames -= n;

        if (in != NULL) {
            in += n * channels;
        }
    }

    return 0;
}


static int
cha_copy_ogg(const unsigned char *p, size_t len, chathistory_audio_out_t *out,
    unsigned *duration_ms, char *err, size_t errlen)
{
    cha_ogg_info_t  info;

    if (cha_ogg_check(p, len, &info, err, errlen) != 0) {
        return -1;
    }

    out->data = malloc(len);
    if (out->data == NULL) {
        cha_error(err, errlen, "out of memory");
        return -1;
    }

    memcpy(out->data, p, len);
    out->len = len;
    *duration_ms = (unsigned) ((info.samples * 1000 + CHA_OPUS_RATE / 2)
                               / CHA_OPUS_RATE);

    return 0;
}


/* An Ogg serial number: any will do, this one is reproducible (FNV-1a). */
static uint32_t
cha_serial(const unsigned char *p, size_t len)
{
    size_t    i, n;
    uint32_t  h;

    h = 2166136261u ^ (uint32_t) len;
    n = len < 65536 ? len : 65536;

    for (i = 0; i < n; i++) {
        h = (h ^ p[i]) * 16777619u;
    }

    return h;
}
