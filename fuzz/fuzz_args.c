
/*
 * Fuzz target: the query arguments of the API's lists (?org_id=, ?order=,
 * ?cursor=, ?limit=) through the handlers that read them.  The input's
 * first byte picks the handler and /api or /v1, the rest is r->args.
 */


#include "harness.h"
#include "ngx_http_chathistory_api.h"


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
    ngx_http_request_t              *r;
    ngx_http_chathistory_api_ctx_t  *ctx;

    if (size < 1) {
        return 0;
    }

    r = harness_request();
    ctx = harness_api_ctx(r, (data[0] & 4) ? HARNESS_ORG : NULL);

    r->args.len = size - 1;
    r->args.data = ngx_pnalloc(r->pool, size - 1);
    harness_check(r->args.data != NULL || size == 1);
    ngx_memcpy(r->args.data, data + 1, size - 1);

    ngx_memzero(&harness_query, sizeof(harness_query_t));

    switch (data[0] & 3) {

    case 0:
        rc = ngx_http_chathistory_session_list(r);
        break;

    case 1:
        rc = ngx_http_chathistory_message_list(r);
        break;

    default:
        rc = ngx_http_chathistory_retention_get(r);
    }

    harness_check_answer(rc, ctx);

    harness_request_free(r);

    return 0;
}
