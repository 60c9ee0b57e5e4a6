
/*
 * Internals of the audio library, shared by its files and its tests.
 */

#ifndef _CHATHISTORY_AUDIO_INT_H_INCLUDED_
#define _CHATHISTORY_AUDIO_INT_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>

#include "chathistory_audio.h"


#define CHA_OPUS_RATE       48000
#define CHA_FRAME_MS        20
#define CHA_MAX_CHANNELS    8


/* a parsed WAV file: the sample bytes point into the caller's buffer */
typedef struct {
    const unsigned char  *data;
    size_t                frames;
    unsigned              rate;
    unsigned              channels;     /* in the file */
    unsigned              bytes;        /* per sample: 2, 3 or 4 */
    unsigned              block_align;
    int                   is_float;
} cha_wav_t;


/* what an Ogg Opus stream holds */
typedef struct {
    unsigned              channels;
    unsigned              pre_skip;
    unsigned              input_rate;
    uint64_t              samples;      /* 48 kHz, pre-skip removed */
    size_t                packets;      /* audio packets */
} cha_ogg_info_t;


typedef struct cha_resampler_s  cha_resampler_t;
typedef struct cha_opus_enc_s   cha_opus_enc_t;


void cha_error(char *err, size_t errlen, const char *fmt, ...)
#ifdef __GNUC__
    __attribute__ ((format (printf, 3, 4)))
#endif
    ;

int cha_wav_parse(const unsigned char *p, size_t len, cha_wav_t *wav,
    char *err, size_t errlen);
unsigned cha_wav_out_channels(const cha_wav_t *wav);
void cha_wav_read(const cha_wav_t *wav, size_t first, size_t n, float *out);

int cha_multipart_find(const unsigned char *body, size_t len,
    const char *content_type, const unsigned char **part, size_t *part_len,
    const char **part_type, size_t *part_type_len, char *err, size_t errlen);

unsigned cha_resample_rate(unsigned rate);
cha_resampler_t *cha_resample_create(unsigned channels, unsigned in_rate,
    unsigned out_rate, char *err, size_t errlen);
int cha_resample(cha_resampler_t *rs, const float *in, size_t *in_frames,
    float *out, size_t *out_frames);
size_t cha_resample_latency(cha_resampler_t *rs);
void cha_resample_destroy(cha_resampler_t *rs);

cha_opus_enc_t *cha_opus_create(unsigned rate, unsigned channels,
    unsigned input_rate, const chathistory_audio_opts_t *opts, uint32_t serial,
    char *err, size_t errlen);
int cha_opus_write(cha_opus_enc_t *enc, const float *pcm, size_t frames,
    char *err, size_t errlen);
int cha_opus_finish(cha_opus_enc_t *enc, uint64_t samples48,
    chathistory_audio_out_t *out, char *err, size_t errlen);
void cha_opus_destroy(cha_opus_enc_t *enc);

int cha_ogg_check(const unsigned char *p, size_t len, cha_ogg_info_t *info,
    char *err, size_t errlen);


#endif /* _CHATHISTORY_AUDIO_INT_H_INCLUDED_ */
