
/*
 * RIFF/WAVE parser: finds the format and the samples, reads them as float.
 */


#include <string.h>

#include "chathistory_audio_int.h"


#define CHA_WAVE_PCM         0x0001
#define CHA_WAVE_FLOAT       0x0003
#define CHA_WAVE_EXTENSIBLE  0xfffe
#define CHA_SIZE_UNKNOWN     0xffffffff


typedef struct {
    unsigned              format;
    unsigned              channels;
    unsigned              rate;
    unsigned              block_align;
    unsigned              bits;
} cha_wav_fmt_t;


static int cha_wav_fmt(const unsigned char *p, size_t size, cha_wav_fmt_t *fmt,
    char *err, size_t errlen);
static int cha_wav_check(const cha_wav_fmt_t *fmt, cha_wav_t *wav, char *err,
    size_t errlen);
static void cha_wav_chunk_name(const unsigned char *id, char *name);
static float cha_wav_sample(const cha_wav_t *wav, const unsigned char *p);


/* the tail shared by the KSDATAFORMAT_SUBTYPE_PCM and _IEEE_FLOAT GUIDs */
static const unsigned char  cha_wav_guid_tail[14] = {
    0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00,
    0x00, 0xaa, 0x00, 0x38, 0x9b, 0x71
};


static uint32_t
cha_le32(const unsigned char *p)
{
    return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16
           | (uint32_t) p[3] << 24;
}


static unsigned
cha_le16(const unsigned char *p)
{
    return (unsigned) p[0] | (unsigned) p[1] << 8;
}


/*
 * Walks the chunks up to "fmt " and "data".  The RIFF size is not trusted;
 * a data size of 0xffffffff (streaming writers, RF64) means "to the end".
 */
int
cha_wav_parse(const unsigned char *p, size_t len, cha_wav_t *wav, char *err,
    size_t errlen)
{
    int                   have_fmt, have_ds64, rf64;
    char                  name[5];
    size_t                pos, left, size, data_len;
    uint32_t              riff_size;
    uint64_t              ds64_data;
    cha_wav_fmt_t         fmt;
    const unsigned char  *data, *id;

    if (len < 12
        || (memcmp(p, "RIFF", 4) != 0 && memcmp(p, "RF64", 4) != 0)
        || memcmp(p + 8, "WAVE", 4) != 0)
    {
        cha_error(err, errlen, "not a WAV file");
        return -1;
    }

    rf64 = (p[1] == 'F' && p[2] == '6');
    riff_size = cha_le32(p + 4);
    ds64_data = 0;
    have_ds64 = 0;
    have_fmt = 0;
    data = NULL;
    data_len = 0;
    memset(&fmt, 0, sizeof(fmt));

    for (pos = 12; /* void */; pos += size + (size & 1)) {

        if (data != NULL && have_fmt) {
            break;
        }

        if (pos >= len || len - pos < 8) {
            cha_error(err, errlen, "missing %s chunk",
                      have_fmt ? "data" : "fmt");
            return -1;
        }

        left = len - pos;

        id = p + pos;
        size = cha_le32(p + pos + 4);
        pos += 8;
        left -= 8;

        if (memcmp(id, "data", 4) == 0) {

            if (data != NULL) {
                cha_error(err, errlen, "several data chunks");
                return -1;
            }

            if (size == CHA_SIZE_UNKNOWN && have_ds64) {
                size = (ds64_data <= left) ? (size_t) ds64_data : left + 1;

            } else if (size == CHA_SIZE_UNKNOWN
                       || (size == 0 && left > 0
                           && (riff_size == 0
                               || riff_size == CHA_SIZE_UNKNOWN)))
            {
                size = left;
            }

            if (size > left) {
                cha_error(err, errlen, "truncated data chunk");
                return -1;
            }

            data = p + pos;
            data_len = size;
            continue;
        }

        if (size > left) {
            cha_wav_chunk_name(id, name);
            cha_error(err, errlen, "truncated %s chunk", name);
            return -1;
        }

        if (memcmp(id, "fmt ", 4) == 0) {
            if (have_fmt) {
                cha_error(err, errlen, "several fmt chunks");
                return -1;
            }

            if (cha_wav_fmt(p + pos, size, &fmt, err, errlen) != 0) {
                return -1;
            }

            have_fmt = 1;

        } else if (memcmp(id, "ds64", 4) == 0 && rf64 && size >= 16) {
            ds64_data = (uint64_t) cha_le32(p + pos + 8)
                        | (uint64_t) cha_le32(p + pos + 12) << 32;
            have_ds64 = 1;
        }

        if (size + (size & 1) > left) {
            size = left;    /* a missing pad byte at the very end */
        }
    }

    if (cha_wav_check(&fmt, wav, err, errlen) != 0) {
        return -1;
    }

    wav->data = data;
    wav->frames = data_len / wav->block_align;

    if (wav->frames == 0) {
        cha_error(err, errlen, "no audio samples");
        return -1;
    }

    return 0;
}


/* Reads a "fmt " chunk, resolving WAVE_FORMAT_EXTENSIBLE to its subformat. */
static int
cha_wav_fmt(const unsigned char *p, size_t size, cha_wav_fmt_t *fmt, char *err,
    size_t errlen)
{
    if (size < 16) {
        cha_error(err, errlen, "short fmt chunk");
        return -1;
    }

    fmt->format = cha_le16(p);
    fmt->channels = cha_le16(p + 2);
    fmt->rate = cha_le32(p + 4);
    fmt->block_align = cha_le16(p + 12);
    fmt->bits = cha_le16(p + 14);

    if (fmt->format != CHA_WAVE_EXTENSIBLE) {
        return 0;
    }

    if (size < 40 || cha_le16(p + 16) < 22) {
        cha_error(err, errlen, "short extensible fmt chunk");
        return -1;
    }

    if (memcmp(p + 26, cha_wav_guid_tail, sizeof(cha_wav_guid_tail)) != 0
        || cha_le16(p + 24) == CHA_WAVE_EXTENSIBLE)
    {
        cha_error(err, errlen, "unsupported extensible subformat");
        return -1;
    }

    fmt->format = cha_le16(p + 24);

    return 0;
}


static int
cha_wav_check(const cha_wav_fmt_t *fmt, cha_wav_t *wav, char *err,
    size_t errlen)
{
    if (fmt->format != CHA_WAVE_PCM && fmt->format != CHA_WAVE_FLOAT) {
        cha_error(err, errlen, "unsupported format tag 0x%04x", fmt->format);
        return -1;
    }

    if (fmt->format == CHA_WAVE_FLOAT && fmt->bits != 32) {
        cha_error(err, errlen, "unsupported sample format %u-bit float",
                  fmt->bits);
        return -1;
    }

    if (fmt->bits != 16 && fmt->bits != 24 && fmt->bits != 32) {
        cha_error(err, errlen, "unsupported sample format %u-bit", fmt->bits);
        return -1;
    }

    if (fmt->channels == 0 || fmt->channels > CHA_MAX_CHANNELS) {
        cha_error(err, errlen, "unsupported channel count %u", fmt->channels);
        return -1;
    }

    if (fmt->rate < 8000 || fmt->rate > 192000) {
        cha_error(err, errlen, "unsupported sample rate %u", fmt->rate);
        return -1;
    }

    if (fmt->block_align != fmt->channels * fmt->bits / 8) {
        cha_error(err, errlen, "bad block align %u", fmt->block_align);
        return -1;
    }

    wav->rate = fmt->rate;
    wav->channels = fmt->channels;
    wav->bytes = fmt->bits / 8;
    wav->block_align = fmt->block_align;
    wav->is_float = (fmt->format == CHA_WAVE_FLOAT);

    return 0;
}


/* A chunk id fit for a message: "fmt " becomes "fmt". */
static void
cha_wav_chunk_name(const unsigned char *id, char *name)
{
    int  i;

    for (i = 0; i < 4; i++) {
        name[i] = (id[i] > 0x20 && id[i] < 0x7f) ? (char) id[i] : '?';
    }

    for (name[4] = '\0'; i > 1 && id[i - 1] == ' '; i--) {
        name[i - 1] = '\0';
    }
}


/* Channels after downmixing: 1 or 2 are kept, more become mono. */
unsigned
cha_wav_out_channels(const cha_wav_t *wav)
{
    return wav->channels <= 2 ? wav->channels : 1;
}


/* Reads n frames from frame "first" as interleaved float in [-1, 1]. */
void
cha_wav_read(const cha_wav_t *wav, size_t first, size_t n, float *out)
{
    float                 sum;
    size_t                i;
    unsigned              c;
    const unsigned char  *p;

    p = wav->data + first * wav->block_align;

    for (i = 0; i < n; i++) {

        if (wav->channels <= 2) {
            for (c = 0; c < wav->channels; c++) {
                *out++ = cha_wav_sample(wav, p);
                p += wav->bytes;
            }

            continue;
        }

        sum = 0;

        for (c = 0; c < wav->channels; c++) {
            sum += cha_wav_sample(wav, p);
            p += wav->bytes;
        }

        *out++ = sum / (float) wav->channels;
    }
}


static float
cha_wav_sample(const cha_wav_t *wav, const unsigned char *p)
{
    float     f;
    int32_t   v;
    uint32_t  u;

    switch (wav->bytes) {

    case 2:
        return (float) (int16_t) cha_le16(p) * (1.0f / 32768.0f);

    case 3:
        u = (uint32_t) p[0] << 8 | (uint32_t) p[1] << 16
            | (uint32_t) p[2] << 24;
        memcpy(&v, &u, sizeof(v));
        return (float) (v >> 8) * (1.0f / 8388608.0f);

    default:
        u = cha_le32(p);

        if (!wav->is_float) {
            memcpy(&v, &u, sizeof(v));
            return (float) v * (1.0f / 2147483648.0f);
        }

        memcpy(&f, &u, sizeof(f));

        /* NaN fails both comparisons and becomes silence */
        if (!(f >= -1.0f && f <= 1.0f)) {
            return f > 1.0f ? 1.0f : (f < -1.0f ? -1.0f : 0.0f);
        }

        return f;
    }
}
