
/*
 * Encodes a file with the audio library, for bench/encode.
 *
 *     encode-cli IN OUT [BITRATE [COMPLEXITY [CONTENT_TYPE]]]
 *
 * Prints the seconds chathistory_audio_encode() took, the file already in
 * memory: what bench/encode sets beside a bare libopus loop (encode-raw.c).
 */


#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "../src/audio/chathistory_audio.h"


int
main(int argc, char **argv)
{
    long                      n;
    char                      err[128];
    FILE                     *f;
    unsigned                  ms;
    unsigned char            *in;
    struct timespec           t0, t1;
    chathistory_audio_out_t   out;
    chathistory_audio_opts_t  opts = CHATHISTORY_AUDIO_OPTS_DEFAULT;

    if (argc < 3) {
        fprintf(stderr, "usage: %s IN OUT [BITRATE [COMPLEXITY [TYPE]]]\n",
                argv[0]);
        return 2;
    }

    if (argc > 3) {
        opts.bitrate = atoi(argv[3]);
    }

    if (argc > 4) {
        opts.complexity = atoi(argv[4]);
    }

    opts.max_input = 0;

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

    clock_gettime(CLOCK_MONOTONIC, &t0);

    if (chathistory_audio_encode(in, n, argc > 5 ? argv[5] : NULL, &opts,
                                 &out, &ms, err, sizeof(err))
        != 0)
    {
        fprintf(stderr, "%s: %s\n", argv[1], err);
        return 1;
    }

    clock_gettime(CLOCK_MONOTONIC, &t1);

    printf("%.6f\n", (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);

    f = fopen(argv[2], "wb");
    if (f == NULL || fwrite(out.data, 1, out.len, f) != out.len
        || fclose(f) != 0)
    {
        perror(argv[2]);
        return 1;
    }

    chathistory_audio_out_free(&out);
    free(in);

    return 0;
}
