
/*
 * Fuzz target: decoding a ?cursor= value.  What decodes must encode back
 * to a cursor that decodes to the same position.
 */


#include "harness.h"
#include "ngx_http_chathistory_cursor.h"


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    harness_init();
    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    u_char                         *p;
    ngx_str_t                       in, again;
    ngx_pool_t                     *pool;
    ngx_http_chathistory_cursor_t   cursor, back;

    pool = harness_pool();

    /* the argument's bytes in an allocation of their own, no NUL after */
    in.len = size;
    in.data = ngx_pnalloc(pool, size);
    harness_check(in.data != NULL || size == 0);
    ngx_memcpy(in.data, data, size);

    if (ngx_http_chathistory_cursor_decode(&in, &cursor) == NGX_OK) {

        p = (u_char *) cursor.micros;
        harness_check(*p != '\0');

        for ( /* void */ ; *p; p++) {
            harness_check(*p >= '0' && *p <= '9');
        }

        harness_check(ngx_strlen(cursor.id.text)
                      == NGX_HTTP_CHATHISTORY_UUID_LEN);

        harness_check(ngx_http_chathistory_cursor_encode(pool, cursor.micros,
                                                (char *) cursor.id.text, &again)
                      == NGX_OK);
        harness_check(ngx_http_chathistory_cursor_decode(&again, &back)
                      == NGX_OK);
        harness_check(ngx_strcmp(back.micros, cursor.micros) == 0);
        harness_check(ngx_strcmp(back.id.text, cursor.id.text) == 0);
    }

    ngx_destroy_pool(pool);

    return 0;
}
