
/*
 * Audio library: turns a recorded request body into an Ogg Opus file.
 *
 * Plain C with no nginx dependency, meant to run in an nginx thread pool
 * task: no global mutable state, no logging, everything malloc'd inside is
 * freed on every path except the output, which the caller frees with
 * chathistory_audio_out_free().  Link with -lopus -logg -lspeexdsp.
 *
 * Accepted input:
 *   - RIFF/WAVE (and RF64): PCM 16, 24 or 32-bit integer, 32-bit float
 *     (WAVE_FORMAT_PCM, WAVE_FORMAT_IEEE_FLOAT, WAVE_FORMAT_EXTENSIBLE), 1 to
 *     8 channels at 8000..192000 Hz; 1 or 2 channels are kept, 3 to 8 are
 *     downmixed to mono.  Rates Opus takes (8/12/16/24/48 kHz) are encoded
 *     as they are, others are resampled to the next higher Opus rate (48 kHz
 *     above 48 kHz).
 *   - Ogg Opus: validated, then returned unchanged.
 *   - multipart/form-data with exactly one audio part, one of the above.
 */

#ifndef _CHATHISTORY_AUDIO_H_INCLUDED_
#define _CHATHISTORY_AUDIO_H_INCLUDED_


#include <stddef.h>


#define CHATHISTORY_AUDIO_BITRATE     24000
#define CHATHISTORY_AUDIO_COMPLEXITY  5
#define CHATHISTORY_AUDIO_MAX_INPUT   (64 * 1024 * 1024)

/* the defaults, also what a NULL opts means */
#define CHATHISTORY_AUDIO_OPTS_DEFAULT                                      \
    { CHATHISTORY_AUDIO_BITRATE, CHATHISTORY_AUDIO_COMPLEXITY,              \
      CHATHISTORY_AUDIO_MAX_INPUT, NULL }


typedef struct {
    unsigned char  *data;          /* malloc'd Ogg Opus file */
    size_t          len;
} chathistory_audio_out_t;


typedef struct {
    int             bitrate;       /* bit/s, 6000..510000; 0: default */
    int             complexity;    /* 0..10 */
    size_t          max_input;     /* larger bodies are refused; 0: no limit */
    const char     *comment;       /* "KEY=value" for OpusTags, or NULL */
} chathistory_audio_opts_t;


/*
 * Encodes (or validates and copies) body according to content_type, the
 * request's Content-Type header value (NULL or "application/octet-stream":
 * sniffed).  Returns 0 and fills out and *duration_ms, or -1 with a short
 * lower-case reason in err ("not a WAV file", "truncated data chunk", ...);
 * on failure out is left empty.  err may be NULL.
 */
int chathistory_audio_encode(const unsigned char *body, size_t len,
    const char *content_type, const chathistory_audio_opts_t *opts,
    chathistory_audio_out_t *out, unsigned *duration_ms, char *err,
    size_t errlen);

/* Frees what chathistory_audio_encode() returned; out may be empty. */
void chathistory_audio_out_free(chathistory_audio_out_t *out);


#endif /* _CHATHISTORY_AUDIO_H_INCLUDED_ */
