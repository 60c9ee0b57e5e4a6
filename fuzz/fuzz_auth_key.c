
/*
 * Fuzz target: the API key of a /v1 request.  The input is header lines,
 * "Name: value", as nginx hands them over; Authorization is nginx's
 * unique header, so a second one is the client's 400 before any of ours.
 */


#include <string.h>

#include "harness.h"
#include "ngx_http_chathistory_auth.h"


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    harness_init();
    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char              *buf, *p, *last, *eol, *colon, *value;
    ngx_str_t            key;
    ngx_uint_t           invalid;
    const char          *error;
    ngx_table_elt_t     *h;
    ngx_http_request_t  *r;

    r = harness_request();

    buf = ngx_pnalloc(r->pool, size);
    harness_check(buf != NULL || size == 0);
    ngx_memcpy(buf, data, size);

    for (p = buf, last = buf + size; p < last; p = eol + 1) {
        eol = memchr(p, '\n', last - p);
        if (eol == NULL) {
            eol = last;
        }

        colon = memchr(p, ':', eol - p);
        if (colon == NULL || colon == p) {
            continue;
        }

        /* nginx skips the spaces after the colon */
        for (value = colon + 1; value < eol && *value == ' '; value++) {
            /* void */
        }

        h = harness_header(r, p, colon - p, value, eol - value);

        if (colon - p == sizeof("Authorization") - 1
            && ngx_strncasecmp(p, (u_char *) "Authorization",
                               sizeof("Authorization") - 1) == 0)
        {
            if (r->headers_in.authorization != NULL) {
                harness_request_free(r);
                return 0;
            }

            r->headers_in.authorization = h;
        }
    }

    error = NULL;

    if (ngx_http_chathistory_auth_key(r, &key, &error, &invalid) == NGX_OK) {
        harness_check(key.len >= 1 && key.len <= 256);
        harness_check(key.data >= buf && key.data + key.len <= buf + size);

        for (p = key.data; p < key.data + key.len; p++) {
            harness_check(*p >= 0x21 && *p <= 0x7e);
        }

    } else {
        harness_check(error != NULL);
        harness_check(invalid == 0 || invalid == 1);
    }

    harness_request_free(r);

    return 0;
}
