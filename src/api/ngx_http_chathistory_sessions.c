
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
    const char  *user_id;
    const char  *metadata;
} ngx_http_chathistory_session_in_t;


static ngx_int_t ngx_http_chathistory_session_query(ngx_http_request_t *r,
    ngx_uint_t stmt, ngx_http_chathistory_pg_handler_pt handler);
static ngx_int_t ngx_http_chathistory_session_read(ngx_http_request_t *r,
    cJSON *body, ngx_http_chathistory_session_in_t *in);
static ngx_int_t ngx_http_chathistory_session_lang(ngx_http_request_t *r,
    cJSON *body, const char *name, char **tag);
static ngx_int_t ngx_http_chathistory_session_title(ngx_http_request_t *r,
    cJSON *item, const char **title);
static ngx_int_t ngx_http_chathistory_session_owner(ngx_http_request_t *r,
    cJSON *body, const char **user_id, const char **metadata);
static ngx_int_t ngx_http_chathistory_session_list_args(ngx_http_request_t *r,
    const char **params);
static ngx_int_t ngx_http_chathistory_session_list_filters(
    ngx_http_request_t *r, const char **user_id, const char **metadata);
static ngx_int_t ngx_http_chathistory_session_location(ngx_http_request_t *r,
    const char *id);
static ngx_int_t ngx_http_chathistory_session_conditions(
    ngx_http_request_t *r, const char *digest);
static ngx_int_t ngx_http_chathistory_session_update_params(
    ngx_http_request_t *r, cJSON *body, const char **params);
static void ngx_http_chathistory_session_answer(
    ngx_http_chathistory_pg_query_t *q, PGresult *res, ngx_uint_t status);
static void ngx_http_chathistory_session_created(
    ngx_http_chathistory_pg_query_t *q, PGresult *res);
static void ngx_http_chathistory_session_found(
    ngx_http_chathistory_pg_query_t *q, PGresult *res);
static void ngx_http_chathistory_session_updated(
    ngx_http_chathistory_pg_query_t *q, PGresult *res);
static void ngx_http_chathistory_session_listed(
    ngx_http_chathistory_pg_query_t *q, PGresult *res);
static void ngx_http_chathistory_session_deleted(
    ngx_http_chathistory_pg_query_t *q, PGresult *res);


static const char  *ngx_http_chathistory_session_create_members[] = {
    "source_lang", "target_lang", "audio_enabled", "title", "org_id",
    "user_id", "metadata", NULL
};

static const char  *ngx_http_chathistory_session_update_members[] = {
    "title", "audio_enabled", "user_id", "metadata", NULL
};


ngx_int_t
ngx_http_chathistory_session_create(ngx_http_request_t *r)
{
    ngx_int_t                           rc;
    const char                         *params[8];
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
    params[6] = in.user_id;
    params[7] = in.metadata;

    if (ngx_http_chathistory_session_location(r, (char *) id->text)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_chathistory_api_query(r,
                                   NGX_HTTP_CHATHISTORY_SQL_SESSION_CREATE,
                                   params, 8,
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

    return ngx_http_chathistory_session_owner(r, body, &in->user_id,
                                              &in->metadata);
}


/* user_id and metadata of a body: NULL when absent or null. */
static ngx_int_t
ngx_http_chathistory_session_owner(ngx_http_request_t *r, cJSON *body,
    const char **user_id, const char **metadata)
{
    ngx_int_t  rc;

    rc = ngx_http_chathistory_api_user_id(r,
                             cJSON_GetObjectItemCaseSensitive(body, "user_id"),
                             NULL, user_id);
    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_http_chathistory_api_metadata(r,
                            cJSON_GetObjectItemCaseSensitive(body, "metadata"),
                            NULL, metadata);
}


/* Where a new session lives: a relative reference, as clients resolve. */
static ngx_int_t
ngx_http_chathistory_session_location(ngx_http_request_t *r, const char *id)
{
    u_char           *p;
    ngx_str_t         url;
    ngx_table_elt_t  *h;

    if (ngx_http_chathistory_api_sessions_url(r, &url) != NGX_OK) {
        return NGX_ERROR;
    }

    h = ngx_list_push(&r->headers_out.headers);
    p = ngx_pnalloc(r->pool, url.len + NGX_HTTP_CHATHISTORY_UUID_LEN);

    if (h == NULL || p == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Location");
    h->value.data = p;
    p = ngx_cpymem(p, url.data, url.len);
    p = ngx_cpymem(p, id, NGX_HTTP_CHATHISTORY_UUID_LEN);
    h->value.len = p - h->value.data;

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
    ngx_int_t  rc;

    if (ngx_http_chathistory_api_found(q, res, "no such organization", &rc)
        != NGX_OK)
    {
        ngx_http_finalize_request(q->request, rc);
        return;
    }

    ngx_http_chathistory_session_answer(q, res, NGX_HTTP_CREATED);
}


/* A session's JSON (column 0) with its ETag (column 1); then finalize. */
static void
ngx_http_chathistory_session_answer(ngx_http_chathistory_pg_query_t *q,
    PGresult *res, ngx_uint_t status)
{
    ngx_int_t            rc;
    ngx_http_request_t  *r;

    r = q->request;

    if (ngx_http_chathistory_api_etag(r, PQgetvalue(res, 0, 1)) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    if (status == NGX_HTTP_OK) {
        rc = ngx_http_chathistory_session_conditions(r, PQgetvalue(res, 0, 1));

        if (rc != NGX_DECLINED) {
            ngx_http_finalize_request(r, rc);
            return;
        }
    }

    rc = ngx_http_chathistory_send_text(r, status, PQgetvalue(res, 0, 0),
                                        PQgetlength(res, 0, 0));

    ngx_http_finalize_request(r, rc);
}


/*
 * If-None-Match and If-Match of a GET, answered here rather than by
 * nginx's not-modified filter, whose 412 would not be JSON: NGX_DECLINED
 * to send the representation, else what the request was answered with.
 */
static ngx_int_t
ngx_http_chathistory_session_conditions(ngx_http_request_t *r,
    const char *digest)
{
    const char  *tags;

    r->disable_not_modified = 1;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_DECLINED;
    }

    if (r->headers_in.if_match != NULL) {
        if (ngx_http_chathistory_api_etags(r, r->headers_in.if_match, 0,
                                           &tags)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (!ngx_http_chathistory_api_etag_in(tags, digest)) {
            return ngx_http_chathistory_send_error(r,
                       NGX_HTTP_PRECONDITION_FAILED,
                       "the session does not match If-Match");
        }
    }

    if (r->headers_in.if_none_match != NULL) {
        if (ngx_http_chathistory_api_etags(r, r->headers_in.if_none_match, 1,
                                           &tags)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        if (ngx_http_chathistory_api_etag_in(tags, digest)) {
            return ngx_http_chathistory_send_not_modified(r);
        }
    }

    return NGX_DECLINED;
}


ngx_int_t
ngx_http_chathistory_session_get(ngx_http_request_t *r)
{
    return ngx_http_chathistory_session_query(r,
                                          NGX_HTTP_CHATHISTORY_SQL_SESSION_GET,
                                          ngx_http_chathistory_session_found);
}


/* One session came back, or none. */
static void
ngx_http_chathistory_session_found(ngx_http_chathistory_pg_query_t *q,
    PGresult *res)
{
    ngx_int_t  rc;

    if (ngx_http_chathistory_api_found(q, res, "no such session", &rc)
        != NGX_OK)
    {
        ngx_http_finalize_request(q->request, rc);
        return;
    }

    ngx_http_chathistory_session_answer(q, res, NGX_HTTP_OK);
}


/* The changed session; a row of NULLs: there, but If-Match failed. */
static void
ngx_http_chathistory_session_updated(ngx_http_chathistory_pg_query_t *q,
    PGresult *res)
{
    ngx_int_t  rc;

    if (res != NULL && PQresultStatus(res) == PGRES_TUPLES_OK
        && PQntuples(res) == 1 && PQgetisnull(res, 0, 0))
    {
        rc = ngx_http_chathistory_send_error(q->request,
                                         NGX_HTTP_PRECONDITION_FAILED,
                                         "the session does not match If-Match");
        ngx_http_finalize_request(q->request, rc);
        return;
    }

    ngx_http_chathistory_session_found(q, res);
}


ngx_int_t
ngx_http_chathistory_session_list(ngx_http_request_t *r)
{
    ngx_int_t    rc;
    const char  *params[6];

    rc = ngx_http_chathistory_session_list_args(r, params);
    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_http_chathistory_api_query(r,
                                        NGX_HTTP_CHATHISTORY_SQL_SESSION_LIST,
                                        params, 6,
                                        ngx_http_chathistory_session_listed);
}


/* ?org_id=, ?cursor=, ?limit=, ?user_id= and ?metadata= become the
 * list's parameters. */
static ngx_int_t
ngx_http_chathistory_session_list_args(ngx_http_request_t *r,
    const char **params)
{
    ngx_int_t  rc;

    rc = ngx_http_chathistory_api_org_named(r, NULL, &params[0]);
    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_chathistory_api_page_args(r, &params[1], &params[2],
                                            &params[3]);
    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_http_chathistory_session_list_filters(r, &params[4],
                                                     &params[5]);
}


static ngx_int_t
ngx_http_chathistory_session_list_filters(ngx_http_request_t *r,
    const char **user_id, const char **metadata)
{
    ngx_int_t  rc;
    ngx_str_t  arg;

    *user_id = NULL;
    *metadata = NULL;

    rc = ngx_http_chathistory_arg(r, "user_id", &arg);

    if (rc == NGX_OK) {
        rc = ngx_http_chathistory_api_user_id(r, NULL, &arg, user_id);
        if (rc != NGX_OK) {
            return rc;
        }

    } else if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_chathistory_arg(r, "metadata", &arg);

    if (rc == NGX_OK) {
        return ngx_http_chathistory_api_metadata(r, NULL, &arg, metadata);
    }

    return (rc == NGX_ERROR) ? NGX_HTTP_INTERNAL_SERVER_ERROR : NGX_OK;
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
    ngx_int_t                        rc;
    const char                      *params[10];
    ngx_http_chathistory_api_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_chathistory_module);

    /* the new ETag must not be held against the request's If-Match by
     * nginx's not-modified filter: it was checked before the change */
    r->disable_not_modified = 1;

    if (ngx_http_chathistory_api_unknown_member(ctx->body,
                                 ngx_http_chathistory_session_update_members))
    {
        return ngx_http_chathistory_api_error(r, NGX_HTTP_BAD_REQUEST,
                 "only title, audio_enabled, user_id and metadata can be "
                 "changed");
    }

    if (ctx->body->child == NULL) {
        return ngx_http_chathistory_api_error(r, NGX_HTTP_BAD_REQUEST,
                 "give title, audio_enabled, user_id or metadata to change");
    }

    params[0] = (char *) ctx->session_id.text;
    params[1] = ctx->scope_org;

    rc = ngx_http_chathistory_session_update_params(r, ctx->body, params);
    if (rc != NGX_OK) {
        return rc;
    }

    params[9] = NULL;

    if (r->headers_in.if_match != NULL
        && ngx_http_chathistory_api_etags(r, r->headers_in.if_match, 0,
                                          &params[9])
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_chathistory_api_query(r,
                                      NGX_HTTP_CHATHISTORY_SQL_SESSION_UPDATE,
                                      params, 10,
                                      ngx_http_chathistory_session_updated);
}


/* The members to change, $3 to $9: whether to set each, and its value. */
static ngx_int_t
ngx_http_chathistory_session_update_params(ngx_http_request_t *r,
    cJSON *body, const char **params)
{
    cJSON      *title, *audio, *user, *meta;
    ngx_int_t   rc;

    title = cJSON_GetObjectItemCaseSensitive(body, "title");
    audio = cJSON_GetObjectItemCaseSensitive(body, "audio_enabled");
    user = cJSON_GetObjectItemCaseSensitive(body, "user_id");
    meta = cJSON_GetObjectItemCaseSensitive(body, "metadata");

    if (audio != NULL && !cJSON_IsBool(audio)) {
        return ngx_http_chathistory_api_error(r, NGX_HTTP_BAD_REQUEST,
                                        "audio_enabled must be true or false");
    }

    params[2] = title ? "true" : "false";
    params[4] = audio ? (cJSON_IsTrue(audio) ? "true" : "false") : NULL;
    params[5] = user ? "true" : "false";
    params[7] = meta ? "true" : "false";

    rc = ngx_http_chathistory_session_title(r, title, &params[3]);
    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_chathistory_api_user_id(r, user, NULL, &params[6]);
    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_http_chathistory_api_metadata(r, meta, NULL, &params[8]);
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
