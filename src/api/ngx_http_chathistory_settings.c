
/*
 * Retention settings of an organization: how many days its sessions are
 * kept, or null for ever.
 */


#include "ngx_http_chathistory_api.h"
#include "ngx_http_chathistory_json.h"
#include "ngx_http_chathistory_statements.h"
#include "ngx_http_chathistory_validate.h"


static ngx_int_t ngx_http_chathistory_settings_days(ngx_http_request_t *r,
    cJSON *body, const char **days);
static void ngx_http_chathistory_settings_done(
    ngx_http_chathistory_pg_query_t *q, PGresult *res);


static const char  *ngx_http_chathistory_settings_members[] = {
    "retention_days", "org_id", "apply_to_existing", NULL
};


ngx_int_t
ngx_http_chathistory_retention_get(ngx_http_request_t *r)
{
    ngx_int_t                        rc;
    const char                      *params[2];
    ngx_http_chathistory_api_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_chathistory_module);

    rc = ngx_http_chathistory_api_org_named(r, NULL, &params[0]);
    if (rc != NGX_OK) {
        return rc;
    }

    params[1] = ctx->scope_org;

    return ngx_http_chathistory_api_query(r,
                                     NGX_HTTP_CHATHISTORY_SQL_RETENTION_GET,
                                     params, 2,
                                     ngx_http_chathistory_settings_done);
}


ngx_int_t
ngx_http_chathistory_retention_set(ngx_http_request_t *r)
{
    cJSON                           *apply;
    ngx_int_t                        rc;
    const char                      *params[4];
    ngx_http_chathistory_api_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_chathistory_module);

    if (ngx_http_chathistory_api_unknown_member(ctx->body,
                                     ngx_http_chathistory_settings_members))
    {
        return ngx_http_chathistory_api_error(r, NGX_HTTP_BAD_REQUEST,
                                              "the body has an unknown field");
    }

    rc = ngx_http_chathistory_api_org_named(r, ctx->body, &params[0]);
    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_chathistory_settings_days(r, ctx->body, &params[2]);
    if (rc != NGX_OK) {
        return rc;
    }

    apply = cJSON_GetObjectItemCaseSensitive(ctx->body, "apply_to_existing");

    if (apply != NULL && !cJSON_IsBool(apply)) {
        return ngx_http_chathistory_api_error(r, NGX_HTTP_BAD_REQUEST,
                                    "apply_to_existing must be true or false");
    }

    params[1] = ctx->scope_org;
    params[3] = cJSON_IsTrue(apply) ? "true" : "false";

    return ngx_http_chathistory_api_query(r,
                                     NGX_HTTP_CHATHISTORY_SQL_RETENTION_SET,
                                     params, 4,
                                     ngx_http_chathistory_settings_done);
}


/* retention_days: 1 to 3650, or null to keep sessions for ever. */
static ngx_int_t
ngx_http_chathistory_settings_days(ngx_http_request_t *r, cJSON *body,
    const char **days)
{
    u_char  *p;
    cJSON   *item;

    item = cJSON_GetObjectItemCaseSensitive(body, "retention_days");

    if (item == NULL) {
        return ngx_http_chathistory_api_error(r, NGX_HTTP_BAD_REQUEST,
                                              "retention_days is required");
    }

    if (cJSON_IsNull(item)) {
        *days = NULL;
        return NGX_OK;
    }

    if (!cJSON_IsNumber(item) || item->valuedouble < 1
        || item->valuedouble > 3650
        || item->valuedouble != (double) (int) item->valuedouble)
    {
        return ngx_http_chathistory_api_error(r, NGX_HTTP_BAD_REQUEST,
                    "retention_days must be an integer from 1 to 3650, "
                    "or null");
    }

    p = ngx_pnalloc(r->pool, NGX_INT_T_LEN + 1);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    *ngx_sprintf(p, "%d", (int) item->valuedouble) = '\0';
    *days = (char *) p;

    return NGX_OK;
}


static void
ngx_http_chathistory_settings_done(ngx_http_chathistory_pg_query_t *q,
    PGresult *res)
{
    ngx_http_chathistory_api_answer_row(q, res, NGX_HTTP_OK,
                                        "no such organization");
}
