
/*
 * Fuzz target: the RIFF/WAVE parser, then every sample read as float.
 */


#include "harness.h"
#include "chathistory_audio_int.h"


#define FUZZ_WAV_BLOCK  256


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char       err[128];
    float      out[FUZZ_WAV_BLOCK * CHA_MAX_CHANNELS];
    size_t     pos, n, i;
    cha_wav_t  wav;

    err[0] = '\0';

    if (cha_wav_parse(data, size, &wav, err, sizeof(err)) != 0) {
        harness_check(err[0] != '\0');
        return 0;
    }

    /* the samples lie inside the input, in whole frames */
    harness_check(wav.channels >= 1 && wav.channels <= CHA_MAX_CHANNELS);
    harness_check(wav.block_align == wav.channels * wav.bytes);
    harness_check(wav.frames > 0);
    harness_check(wav.data >= data && wav.data < data + size);
    harness_check(wav.frames <= (size_t) (data + size - wav.data)
                                / wav.block_align);

    for (pos = 0; pos < wav.frames; pos += n) {
        n = ngx_min(wav.frames - pos, FUZZ_WAV_BLOCK);

        cha_wav_read(&wav, pos, n, out);

        for (i = 0; i < n * cha_wav_out_channels(&wav); i++) {
            harness_check(out[i] >= -1.0f && out[i] <= 1.0f);
        }
    }

    return 0;
}
