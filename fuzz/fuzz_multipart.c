
/*
 * Fuzz target: finding the audio part of a multipart/form-data body.  The
 * input's first line is the Content-Type header's value, the rest the body.
 */


#include <string.h>

#include "harness.h"
#include "chathistory_audio_int.h"


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char                 *type, err[128];
    size_t                type_len, part_len, part_type_len;
    const char           *part_type;
    const uint8_t        *nl, *body, *end, *part;

    nl = memchr(data, '\n', size);
    if (nl == NULL) {
        return 0;
    }

    /* a header value is a C string to the parser: no NUL inside */
    type_len = nl - data;
    if (memchr(data, '\0', type_len) != NULL) {
        return 0;
    }

    type = malloc(type_len + 1);
    harness_check(type != NULL);
    memcpy(type, data, type_len);
    type[type_len] = '\0';

    /* a copy of the body alone, so that ASan sees a read past its end */
    end = data + size;
    body = malloc(end - nl - 1 + 1);
    harness_check(body != NULL);
    memcpy((u_char *) body, nl + 1, end - nl - 1);
    end = body + (end - nl - 1);

    err[0] = '\0';
    part = NULL;
    part_type = NULL;
    part_type_len = 0;

    if (cha_multipart_find(body, end - body, type, &part, &part_len,
                           &part_type, &part_type_len, err, sizeof(err))
        != 0)
    {
        harness_check(err[0] != '\0');

    } else {
        harness_check(part >= body && part <= end);
        harness_check(part_len <= (size_t) (end - part));
        harness_check(part_type == NULL
                      || ((const uint8_t *) part_type >= body
                          && part_type_len
                             <= (size_t) (end - (const uint8_t *) part_type)));
    }

    free((u_char *) body);
    free(type);

    return 0;
}
