
/*
 * Sessions: create, list, read, change and delete.
 */


#include "ngx_http_chathistory_api.h"
#include "ngx_http_chathistory_json.h"
#include "ngx_http_chathistory_statements.h"
#include "ngx_http_chathistory_validate.h"


typedef struct {
    const char  *org;
    const char  *title;
    char        *source_lang;
    char        *target_lang;
    const char  *audio_enabled;
} ngx_http_chathistory_session_in_t;


static ngx_int_t ngx_http_chathistory_session_query(ngx_http_request_t *r,
    ngx_uint_t stmt, ngx_http_chathistory_pg_handler_pt handler);
static ngx_int_t ngx_http_chathistory_session_read(ngx_http_request_t *r,
    cJSON *body, ngx_http_chathistory_session_in_t *in);
static ngx_int_t ngx_http_chathistory_session_lang(ngx_http_request_t *r,
    cJSON *body, const char *name, char **tag);
static ngx_int_t ngx_http_chathistory_session_title(ngx_http_request_t *r,
    cJSON *item, const char **title);
static ngx_int_t ngx_http_chathistory_session_list_args(ngx_http_request_t *r,
    const char **params);
static void ngx_http_chathistory_session_created(
    ngx_http_chathistory_pg_query_t *q, PGresult *res);
static void ngx_http_chathistory_session_found(
    ngx_http_chathistory_pg_query_t *q, PGresult *res);
static void ngx_http_chathistory_session_listed(
    ngx_http_chathistory_pg_query_t *q, PGresult *res);
static void ngx_http_chathistory_session_deleted(
    ngx_http_chathistory_pg_query_t *q, PGresult *res);


static const char  *ngx_http_chathistory_session_create_members[] = {
    "source_lang", "target_lang", "audio_enabled", "title", "org_id", NULL
};

static const char  *ngx_http_chathistory_session_update_members[] = {
    "title", "audio_enabled", NULL
};


ngx_int_t
ngx_http_chathistory_session_create(ngx_http_request_t *r)
{
    ngx_int_t                           rc;
    const char                         *params[6];
    ngx_http_chathistory_uuid_t        *id;
    ngx_http_chathistory_api_ctx_t     *ctx;
    ngx_http_chathistory_session_in_t   in;

    ctx = ngx_http_get_module_ctx(r, ngx_http_chathistory_module);

    rc = ngx_http_chathistory_session_read(r, ctx->body, &in);
    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_chathistory_api_org(r, in.org, &in.org);
    if (rc != NGX_OK) {
        return rc;
    }

    id = ngx_palloc(r->pool, sizeof(ngx_http_chathistory_uuid_t));
    if (id == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_chathistory_uuid_v7(id);

    params[0] = (char *) id->text;
    params[1] = in.org;
    params[2] = in.title;
    params[3] = in.source_lang;
    params[4] = in.target_lang;
    params[5] = in.audio_enabled;

    return ngx_http_chathistory_api_query(r,
                                   NGX_HTTP_CHATHISTORY_SQL_SESSION_CREATE,
                                   params, 6,
                                   ngx_http_chathistory_session_created);
}


static ngx_int_t
ngx_http_chathistory_session_read(ngx_http_request_t *r, cJSON *body,
    ngx_http_chathistory_session_in_t *in)
{
    cJSON       *item;
    ngx_int_t    rc;
    const char  *unknown;

    unknown = ngx_http_chathistory_api_unknown_member(body,
                                 ngx_http_chathistory_session_create_members);
    if (unknown != NULL) {
        return ngx_http_chathistory_api_error(r, NGX_HTTP_BAD_REQUEST,
                                               "the body has an unknown field");
    }

    rc = ngx_http_chathistory_session_lang(r, body, "source_lang",
                                           &in->source_lang);
    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_chathistory_session_lang(r, body, "target_lang",
                                           &in->target_lang);
    if (rc != NGX_OK) {
        return rc;
    }

    item = cJSON_GetObjectItemCaseSensitive(body, "title");

    rc = ngx_http_chathistory_session_title(r, item, &in->title);
    if (rc != NGX_OK) {
        return rc;
    }

    item = cJSON_GetObjectItemCaseSensitive(body, "org_id");

    rc = ngx_http_chathistory_api_uuid(r, item, NULL, "org_id", &in->org);
    if (rc != NGX_OK) {
        return rc;
    }

    item = cJSON_GetObjectItemCaseSensitive(body, "audio_enabled");
    in->audio_enabled = "false";

    if (item != NULL && !cJSON_IsNull(item)) {
        if (!cJSON_IsBool(item)) {
            return ngx_http_chathistory_api_error(r, NGX_HTTP_BAD_REQUEST,
                                        "audio_enabled must be true or false");
        }

        in->audio_enabled = cJSON_IsTrue(item) ? "true" : "false";
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_chathistory_session_lang(ngx_http_request_t *r, cJSON *body,
    const char *name, char **tag)
{
    cJSON       *item;
    ngx_int_t    rc;
    ngx_uint_t   target;

    static const char  *required[] = {
        "source_lang is required", "target_lang is required"
    };

    static const char  *malformed[] = {
        "source_lang must be a BCP 47 language tag such as \"en\" or \"pt-BR\"",
        "target_lang must be a BCP 47 language tag such as \"en\" or \"pt-BR\""
    };

    target = (name[0] == 't');
    item = cJSON_GetObjectItemCaseSensitive(body, name);

    if (item == NULL || cJSON_IsNull(item)) {
        return ngx_http_chathistory_api_error(r, NGX_HTTP_BAD_REQUEST,
                                              required[target]);
    }

    rc = cJSON_IsString(item)
         ? ngx_http_chathistory_lang_tag(r->pool, item->valuestring, tag)
         : NGX_DECLINED;

    if (rc == NGX_DECLINED) {
        return ngx_http_chathistory_api_error(r, NGX_HTTP_BAD_REQUEST,
                                              malformed[target]);
    }

    return rc == NGX_OK ? NGX_OK : NGX_HTTP_INTERNAL_SERVER_ERROR;
}


static ngx_int_t
ngx_http_chathistory_session_title(ngx_http_request_t *r, cJSON *item,
    const char **title)
{
    *title = NULL;

    if (item == NULL || cJSON_IsNull(item)) {
        return NGX_OK;
    }

    if (!cJSON_IsString(item)
        || ngx_http_chathistory_text_valid(item->valuestring,
                                      NGX_HTTP_CHATHISTORY_TITLE_MAX) != NGX_OK)
    {
        return ngx_http_chathistory_api_error(r, NGX_HTTP_BAD_REQUEST,
                     "title must be a string of at most 500 bytes, or null");
    }

    *title = item->valuestring;

    return NGX_OK;
}


static void
ngx_http_chathistory_session_created(ngx_http_chathistory_pg_query_t *q,
    PGresult *res)
{
    ngx_http_chathistory_api_answer_row(q, res, NGX_HTTP_CREATED,
                                        "no such organization");
}


ngx_int_t
ngx_http_chathistory_session_get(ngx_http_request_t *r)
{
    return ngx_http_chathistory_session_query(r,
                                          NGX_HTTP_CHATHISTORY_SQL_SESSION_GET,
                                          ngx_http_chathistory_session_found);
}


/* One session came back, or none: shared by read and change. */
static void
ngx_http_chathistory_session_found(ngx_http_chathistory_pg_query_t *q,
    PGresult *res)
{
    ngx_http_chathistory_api_answer_row(q, res, NGX_HTTP_OK,
                                        "no such session");
}


ngx_int_t
ngx_http_chathistory_session_list(ngx_http_request_t *r)
{
    ngx_int_t    rc;
    const char  *params[4];

    rc = ngx_http_chathistory_session_list_args(r, params);
    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_http_chathistory_api_query(r,
                                        NGX_HTTP_CHATHISTORY_SQL_SESSION_LIST,
                                        params, 4,
                                        ngx_http_chathistory_session_listed);
}


/* ?org_id=, ?cursor= and ?limit= become the list's parameters. */
static ngx_int_t
ngx_http_chathistory_session_list_args(ngx_http_request_t *r,
    const char **params)
{
    ngx_int_t  rc;

    rc = ngx_http_chathistory_api_org_named(r, NULL, &params[0]);
    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_http_chathistory_api_page_args(r, &params[1], &params[2],
                                              &params[3]);
}


static void
ngx_http_chathistory_session_listed(ngx_http_chathistory_pg_query_t *q,
    PGresult *res)
{
    ngx_int_t            rc;
    ngx_http_request_t  *r;

    r = q->request;

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = ngx_http_chathistory_api_query_failed(q, res);

    } else {
        rc = ngx_http_chathistory_api_page(r, res, q->values[3]);
    }

    ngx_http_finalize_request(r, rc);
}


ngx_int_t
ngx_http_chathistory_session_update(ngx_http_request_t *r)
{
    cJSON                           *title, *audio;
    ngx_int_t                        rc;
    const char                      *params[5];
    ngx_http_chathistory_api_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_chathistory_module);

    if (ngx_http_chathistory_api_unknown_member(ctx->body,
                                 ngx_http_chathistory_session_update_members))
    {
        return ngx_http_chathistory_api_error(r, NGX_HTTP_BAD_REQUEST,
                          "only title and audio_enabled can be changed");
    }

    title = cJSON_GetObjectItemCaseSensitive(ctx->body, "title");
    audio = cJSON_GetObjectItemCaseSensitive(ctx->body, "audio_enabled");

    if (title == NULL && audio == NULL) {
        return ngx_http_chathistory_api_error(r, NGX_HTTP_BAD_REQUEST,
                          "give title or audio_enabled to change");
    }

    if (audio != NULL && !cJSON_IsBool(audio)) {
        return ngx_http_chathistory_api_error(r, NGX_HTTP_BAD_REQUEST,
                                        "audio_enabled must be true or false");
    }

    params[0] = (char *) ctx->session_id.text;
    params[1] = ctx->scope_org;
    params[2] = title ? "true" : "false";
    params[4] = audio ? (cJSON_IsTrue(audio) ? "true" : "false") : NULL;

    rc = ngx_http_chathistory_session_title(r, title, &params[3]);
    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_http_chathistory_api_query(r,
                                      NGX_HTTP_CHATHISTORY_SQL_SESSION_UPDATE,
                                      params, 5,
                                      ngx_http_chathistory_session_found);
}


ngx_int_t
ngx_http_chathistory_session_delete(ngx_http_request_t *r)
{
    return ngx_http_chathistory_session_query(r,
                                      NGX_HTTP_CHATHISTORY_SQL_SESSION_DELETE,
                                      ngx_http_chathistory_session_deleted);
}


static void
ngx_http_chathistory_session_deleted(ngx_http_chathistory_pg_query_t *q,
    PGresult *res)
{
    ngx_int_t  rc;

    if (ngx_http_chathistory_api_found(q, res, "no such session", &rc)
        == NGX_OK)
    {
        rc = ngx_http_chathistory_send_no_content(q->request);
    }

    ngx_http_finalize_request(q->request, rc);
}


/* A statement about the request's session, in the caller's scope. */
static ngx_int_t
ngx_http_chathistory_session_query(ngx_http_request_t *r,
    ngx_uint_t stmt, ngx_http_chathistory_pg_handler_pt handler)
{
    const char                      *params[2];
    ngx_http_chathistory_api_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_chathistory_module);

    params[0] = (char *) ctx->session_id.text;
    params[1] = ctx->scope_org;

    return ngx_http_chathistory_api_query(r, stmt, params, 2, handler);
}
