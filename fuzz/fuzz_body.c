
/*
 * Fuzz target: JSON request bodies, parsed as the router parses them and
 * walked by the handlers that take one.  The input's first byte picks the
 * handler and /api or /v1, the rest is the body.
 */


#include "harness.h"
#include "ngx_http_chathistory_api.h"
#include "ngx_http_chathistory_json.h"


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    harness_init();
    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ngx_int_t                        rc;
    ngx_str_t                        text;
    ngx_http_request_t              *r;
    ngx_http_chathistory_api_ctx_t  *ctx;

    if (size < 1) {
        return 0;
    }

    r = harness_request();
    r->method = NGX_HTTP_POST;
    ctx = harness_api_ctx(r, (data[0] & 4) ? HARNESS_ORG : NULL);

    /* the body in a buffer of its own size, as the router reads it */
    text.len = size - 1;
    text.data = ngx_pnalloc(r->pool, size - 1);
    harness_check(text.data != NULL || size == 1);
    ngx_memcpy(text.data, data + 1, size - 1);

    ctx->body = ngx_http_chathistory_json_parse(r, &text);

    if (ctx->body == NULL || !cJSON_IsObject(ctx->body)) {
        harness_request_free(r);
        return 0;
    }

    ngx_memzero(&harness_query, sizeof(harness_query_t));

    switch (data[0] & 3) {

    case 0:
        rc = ngx_http_chathistory_session_create(r);
        break;

    case 1:
        rc = ngx_http_chathistory_session_update(r);
        break;

    case 2:
        rc = ngx_http_chathistory_search(r);
        break;

    default:
        rc = ngx_http_chathistory_retention_set(r);
    }

    harness_check_answer(rc, ctx);

    harness_request_free(r);

    return 0;
}
