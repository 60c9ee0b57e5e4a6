/*
 * The limit for bench/encode: libopus alone on the same PCM, in memory.
 *
 *     encode-raw IN.wav [BITRATE [COMPLEXITY]]
 *
 * Reads the 16-bit WAV with the audio library's parser (untimed), then times
 * opus_encode() over its 20 ms frames with the encoder the library configures
 * (VOIP, voice, same bitrate and complexity): no float conversion, no
 * resampling, no Ogg.  Prints the seconds and the bytes of the packets.
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <opus/opus.h>

#include "../src/audio/chathistory_audio_int.h"


static double
now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return ts.tv_sec + ts.tv_nsec / 1e9;
}


int
main(int argc, char **argv)
{
    int             rc, bitrate, complexity;
    long            n;
    char            err[128];
    FILE           *f;
    size_t          frame, i, bytes;
    double          t0, t1;
    int16_t        *pcm, *pad;
    cha_wav_t       wav;
    opus_int32      len;
    OpusEncoder    *enc;
    unsigned char  *in, packet[1275];

    if (argc < 2) {
        fprintf(stderr, "usage: %s IN.wav [BITRATE [COMPLEXITY]]\n", argv[0]);
        return 2;
    }

    bitrate = argc > 2 ? atoi(argv[2]) : 24000;
    complexity = argc > 3 ? atoi(argv[3]) : 5;

    f = fopen(argv[1], "rb");
    if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0) {
        perror(argv[1]);
        return 1;
    }

    rewind(f);
    in = malloc(n ? n : 1);

    if (in == NULL || fread(in, 1, n, f) != (size_t) n) {
        perror(argv[1]);
        return 1;
    }

    fclose(f);

    if (cha_wav_parse(in, n, &wav, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s: %s\n", argv[1], err);
        return 1;
    }

    if (wav.channels != 1 || wav.bytes != 2 || wav.is_float) {
        fprintf(stderr, "%s: 16-bit mono only\n", argv[1]);
        return 1;
    }

    /* whole frames, the last padded with silence as the library does */
    frame = wav.rate / 1000 * CHA_FRAME_MS;
    pcm = calloc(wav.frames + frame, sizeof(int16_t));
    if (pcm == NULL) {
        perror("calloc");
        return 1;
    }

    memcpy(pcm, wav.data, wav.frames * sizeof(int16_t));

    enc = opus_encoder_create((opus_int32) wav.rate, 1,
                              OPUS_APPLICATION_VOIP, &rc);
    if (enc == NULL
        || opus_encoder_ctl(enc, OPUS_SET_BITRATE(bitrate)) != OPUS_OK
        || opus_encoder_ctl(enc, OPUS_SET_COMPLEXITY(complexity)) != OPUS_OK
        || opus_encoder_ctl(enc, OPUS_SET_SIGNAL(OPUS_SIGNAL_VOICE))
           != OPUS_OK)
    {
        fprintf(stderr, "opus: cannot create the encoder\n");
        return 1;
    }

    bytes = 0;
    t0 = now();

    for (i = 0; i < wav.frames; i += frame) {
        pad = pcm + i;
        len = opus_encode(enc, pad, (int) frame, packet, sizeof(packet));
        if (len < 0) {
            fprintf(stderr, "opus: %s\n", opus_strerror(len));
            return 1;
        }

        bytes += (size_t) len;
    }

    t1 = now();

    printf("%.6f %zu\n", t1 - t0, bytes);

    opus_encoder_destroy(enc);
    free(pcm);
    free(in);

    return 0;
}
