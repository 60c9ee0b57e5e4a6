
/*
 * The database's side of the API for fuzz targets: linked with
 * -Wl,--wrap=ngx_http_chathistory_api_query, it takes the statements the
 * handlers send.  Whatever a handler lets through becomes a parameter,
 * and PostgreSQL refuses text that is not UTF-8: so must the handlers.
 */


#include "harness.h"


harness_query_t  harness_query;


ngx_int_t
__wrap_ngx_http_chathistory_api_query(ngx_http_request_t *r, ngx_uint_t stmt,
    const char **params, ngx_uint_t nparams,
    ngx_http_chathistory_pg_handler_pt handler)
{
    ngx_uint_t  i;

    harness_check(handler != NULL);

    for (i = 0; i < nparams; i++) {
        if (params[i] != NULL) {
            harness_check(harness_utf8((u_char *) params[i],
                                       ngx_strlen(params[i]))
                          == NGX_OK);
        }
    }

    harness_query.sent++;
    harness_query.stmt = stmt;
    harness_query.nparams = nparams;

    /* as the real one: the query's handler will finalize the request */
    return NGX_DONE;
}


ngx_http_chathistory_api_ctx_t *
harness_api_ctx(ngx_http_request_t *r, const char *scope_org)
{
    ngx_http_chathistory_api_ctx_t  *ctx;

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_chathistory_api_ctx_t));
    harness_check(ctx != NULL);

    ctx->scope_org = scope_org;

    /* the router has checked the ids of the path */
    harness_check(ngx_http_chathistory_uuid_parse(&ctx->session_id,
                      (u_char *) "0190a5c4-0000-7000-8000-000000000001",
                      NGX_HTTP_CHATHISTORY_UUID_LEN)
                  == NGX_OK);

    ngx_http_set_ctx(r, ctx, ngx_http_chathistory_module);

    return ctx;
}


void
harness_check_answer(ngx_int_t rc, ngx_http_chathistory_api_ctx_t *ctx)
{
    if (rc == NGX_DONE) {
        harness_check(harness_query.sent == 1);
        return;
    }

    harness_check(harness_query.sent == 0);
    harness_check(rc >= NGX_HTTP_BAD_REQUEST);
    harness_check(rc == NGX_HTTP_INTERNAL_SERVER_ERROR || ctx->error != NULL);
}
