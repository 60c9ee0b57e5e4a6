
/*
 * Sample rate conversion to a rate Opus takes, with speexdsp's resampler.
 */


#include <stdlib.h>

#include <speex/speex_resampler.h>

#include "chathistory_audio_int.h"


/* speexdsp's "desktop" quality, as opusenc uses */
#define CHA_RESAMPLE_QUALITY  5


struct cha_resampler_s {
    SpeexResamplerState  *st;
    unsigned              channels;
};


/* The Opus rate to encode at: the input's own, else the next one up. */
unsigned
cha_resample_rate(unsigned rate)
{
    static const unsigned  rates[] = { 8000, 12000, 16000, 24000 };
    size_t                 i;

    for (i = 0; i < sizeof(rates) / sizeof(rates[0]); i++) {
        if (rate <= rates[i]) {
            return rates[i];
        }
    }

    return CHA_OPUS_RATE;
}


cha_resampler_t *
cha_resample_create(unsigned channels, unsigned in_rate, unsigned out_rate,
    char *err, size_t errlen)
{
    int               rc;
    cha_resampler_t  *rs;

    rs = malloc(sizeof(cha_resampler_t));
    if (rs == NULL) {
        cha_error(err, errlen, "out of memory");
        return NULL;
    }

    rs->channels = channels;
    rs->st = speex_resampler_init(channels, in_rate, out_rate,
                                  CHA_RESAMPLE_QUALITY, &rc);
    if (rs->st == NULL) {
        cha_error(err, errlen, "resampler: %s", speex_resampler_strerror(rc));
        free(rs);
        return NULL;
    }

    /* the output starts with the first input sample, not with the delay */
    speex_resampler_skip_zeros(rs->st);

    return rs;
}


/*
 * Converts up to *in_frames interleaved frames into at most *out_frames;
 * both are updated with what was consumed and produced.  in may be NULL to
 * feed silence (flushing the filter's delay at the end).
 */
int
cha_resample(cha_resampler_t *rs, const float *in, size_t *in_frames,
    float *out, size_t *out_frames)
{
    int               rc;
    spx_uint32_t      in_len, out_len;

    in_len = (spx_uint32_t) *in_frames;
    out_len = (spx_uint32_t) *out_frames;

    rc = speex_resampler_process_interleaved_float(rs->st, in, &in_len, out,
                                                   &out_len);
    if (rc != RESAMPLER_ERR_SUCCESS) {
        return -1;
    }

    *in_frames = in_len;
    *out_frames = out_len;

    return 0;
}


/* Input frames still held in the filter once all input was given. */
size_t
cha_resample_latency(cha_resampler_t *rs)
{
    return (size_t) speex_resampler_get_input_latency(rs->st);
}


void
cha_resample_destroy(cha_resampler_t *rs)
{
    if (rs == NULL) {
        return;
    }

    speex_resampler_destroy(rs->st);
    free(rs);
}
