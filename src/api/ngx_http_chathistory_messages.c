
/*
 * A session's messages, in conversation order.
 */


#include "ngx_http_chathistory_api.h"
#include "ngx_http_chathistory_json.h"
#include "ngx_http_chathistory_statements.h"
#include "ngx_http_chathistory_validate.h"


static void ngx_http_chathistory_message_listed(
    ngx_http_chathistory_pg_query_t *q, PGresult *res);


ngx_int_t
ngx_http_chathistory_message_list(ngx_http_request_t *r)
{
    ngx_int_t                        rc;
    ngx_str_t                        order, url;
    ngx_uint_t                       stmt;
    const char                      *params[6];
    ngx_http_chathistory_api_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_chathistory_module);

    stmt = NGX_HTTP_CHATHISTORY_SQL_MESSAGE_LIST_ASC;

    if (ngx_http_chathistory_arg(r, "order", &order) == NGX_OK) {
        if (order.len == 4 && ngx_strncmp(order.data, "desc", 4) == 0) {
            stmt = NGX_HTTP_CHATHISTORY_SQL_MESSAGE_LIST_DESC;

        } else if (order.len != 3 || ngx_strncmp(order.data, "asc", 3) != 0) {
            return ngx_http_chathistory_api_error(r, NGX_HTTP_BAD_REQUEST,
                                             "order must be asc or desc");
        }
    }

    rc = ngx_http_chathistory_api_page_args(r, &params[2], &params[3],
                                            &params[4]);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_http_chathistory_api_sessions_url(r, &url) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    params[0] = (char *) ctx->session_id.text;
    params[1] = ctx->scope_org;
    params[5] = (char *) url.data;

    return ngx_http_chathistory_api_query(r, stmt, params, 6,
                                          ngx_http_chathistory_message_listed);
}


static void
ngx_http_chathistory_message_listed(ngx_http_chathistory_pg_query_t *q,
    PGresult *res)
{
    ngx_int_t  rc;

    /* a session without messages is one row of NULLs: not "not found" */
    if (res != NULL && PQresultStatus(res) == PGRES_TUPLES_OK
        && PQntuples(res) > 0)
    {
        rc = ngx_http_chathistory_api_page(q->request, res, q->values[4]);

    } else {
        (void) ngx_http_chathistory_api_found(q, res, "no such session", &rc);
    }

    ngx_http_finalize_request(q->request, rc);
}
