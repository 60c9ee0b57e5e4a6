
/*
 * Fuzz target: the audio library's entry point, as the capture filter
 * calls it.  The input's first line is the Content-Type, the rest the
 * request body; whatever it turns into must be a valid Ogg Opus stream.
 */


#include <string.h>

#include "harness.h"
#include "chathistory_audio_int.h"


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char                      *type, err[128];
    size_t                     type_len, len;
    unsigned                   duration_ms;
    u_char                    *body;
    const uint8_t             *nl;
    cha_ogg_info_t             info;
    chathistory_audio_out_t    out;
    chathistory_audio_opts_t   opts = CHATHISTORY_AUDIO_OPTS_DEFAULT;

    nl = memchr(data, '\n', size);
    if (nl == NULL) {
        return 0;
    }

    type_len = nl - data;
    if (memchr(data, '\0', type_len) != NULL) {
        return 0;
    }

    type = malloc(type_len + 1);
    harness_check(type != NULL);
    memcpy(type, data, type_len);
    type[type_len] = '\0';

    len = data + size - nl - 1;
    body = malloc(len + 1);
    harness_check(body != NULL);
    memcpy(body, nl + 1, len);

    /* the fastest settings: the encoder is not what is under test */
    opts.complexity = 0;
    err[0] = '\0';

    if (chathistory_audio_encode(body, len, type[0] ? type : NULL, &opts, &out,
                                 &duration_ms, err, sizeof(err))
        != 0)
    {
        harness_check(err[0] != '\0');
        harness_check(out.data == NULL && out.len == 0);

    } else {
        harness_check(out.data != NULL && out.len > 0);
        harness_check(cha_ogg_check(out.data, out.len, &info, err, sizeof(err))
                      == 0);
    }

    chathistory_audio_out_free(&out);
    free(body);
    free(type);

    return 0;
}
