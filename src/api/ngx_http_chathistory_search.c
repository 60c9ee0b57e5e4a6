
/*
 * Search: the query is embedded (in process with the built-in "hash"
 * model, or by an embedding server through a subrequest), then one
 * statement ranks the messages semantically (pgvector's cosine
 * distance over the HNSW index), by keyword (PostgreSQL full text) or by
 * both (reciprocal rank fusion).
 */


#include "ngx_http_chathistory_api.h"
#include "ngx_http_chathistory_embed.h"
#include "ngx_http_chathistory_json.h"
#include "ngx_http_chathistory_statements.h"
#include "ngx_http_chathistory_validate.h"


#define CH_SEARCH_QUERY_MAX  2000
#define CH_SEARCH_DEFAULT    10
#define CH_SEARCH_MAX        100


typedef struct {
    const char  *query;
    ngx_uint_t   stmt;
    const char  *org;
    const char  *session;
    char        *source_lang;
    char        *target_lang;
    const char  *from;
    const char  *to;
    const char  *user_id;
    const char  *metadata;
    char         limit[NGX_INT_T_LEN + 1];
    const char  *url;
} ngx_http_chathistory_search_t;


static ngx_int_t ngx_http_chathistory_search_read(ngx_http_request_t *r,
    cJSON *body, ngx_http_chathistory_search_t *s);
static ngx_int_t ngx_http_chathistory_search_query(ngx_http_request_t *r,
    cJSON *body, ngx_http_chathistory_search_t *s);
static ngx_int_t ngx_http_chathistory_search_ids(ngx_http_request_t *r,
    cJSON *body, ngx_http_chathistory_search_t *s);
static ngx_int_t ngx_http_chathistory_search_langs(ngx_http_request_t *r,
    cJSON *body, ngx_http_chathistory_search_t *s);
static ngx_int_t ngx_http_chathistory_search_times(ngx_http_request_t *r,
    cJSON *body, ngx_http_chathistory_search_t *s);
static ngx_int_t ngx_http_chathistory_search_time(ngx_http_request_t *r,
    cJSON *item, const char *name, int64_t *micros);
static ngx_int_t ngx_http_chathistory_search_limit(ngx_http_request_t *r,
    cJSON *body, ngx_http_chathistory_search_t *s);
static ngx_int_t ngx_http_chathistory_search_run(ngx_http_request_t *r,
    void *data, const char *vector, const char *model);
static void ngx_http_chathistory_search_done(
    ngx_http_chathistory_pg_query_t *q, PGresult *res);


static const char  *ngx_http_chathistory_search_members[] = {
    "query", "mode", "org_id", "session_id", "source_lang", "target_lang",
    "from", "to", "limit", "user_id", "metadata", NULL
};


ngx_int_t
ngx_http_chathistory_search(ngx_http_request_t *r)
{
    ngx_int_t                        rc;
    ngx_str_t                        url;
    ngx_http_chathistory_api_ctx_t  *ctx;
    ngx_http_chathistory_search_t   *s;

    ctx = ngx_http_get_module_ctx(r, ngx_http_chathistory_module);

    /* the parameters live until the statement is sent, maybe after an
     * embedding server has answered: not on the stack */
    s = ngx_palloc(r->pool, sizeof(ngx_http_chathistory_search_t));
    if (s == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_chathistory_search_read(r, ctx->body, s);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_http_chathistory_api_sessions_url(r, &url) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    s->url = (char *) url.data;

    if (s->stmt == NGX_HTTP_CHATHISTORY_SQL_SEARCH_KEYWORD) {
        return ngx_http_chathistory_search_run(r, s, NULL, NULL);
    }

    return ngx_http_chathistory_embed_query(r, s->query,
                                            ngx_http_chathistory_search_run,
                                            s);
}


/* The statement, with the query's vector and model unless by keyword. */
static ngx_int_t
ngx_http_chathistory_search_run(ngx_http_request_t *r, void *data,
    const char *vector, const char *model)
{
    ngx_uint_t                      n;
    const char                     *params[14];
    ngx_http_chathistory_search_t  *s = data;

    params[0] = vector ? vector : s->query;
    params[1] = vector ? model
                       : (s->source_lang ? s->source_lang : s->target_lang);
    params[2] = s->org;
    params[3] = s->session;
    params[4] = s->source_lang;
    params[5] = s->target_lang;
    params[6] = s->from;
    params[7] = s->to;
    params[8] = s->limit;
    params[9] = s->url;
    n = 10;

    if (s->stmt == NGX_HTTP_CHATHISTORY_SQL_SEARCH_HYBRID) {
        params[n++] = s->query;
        params[n++] = s->source_lang ? s->source_lang : s->target_lang;
    }

    params[n++] = s->user_id;
    params[n++] = s->metadata;

    return ngx_http_chathistory_api_query(r, s->stmt, params, n,
                                          ngx_http_chathistory_search_done);
}


static ngx_int_t
ngx_http_chathistory_search_read(ngx_http_request_t *r, cJSON *body,
    ngx_http_chathistory_search_t *s)
{
    ngx_int_t  rc;

    ngx_memzero(s, sizeof(ngx_http_chathistory_search_t));

    if (ngx_http_chathistory_api_unknown_member(body,
                                        ngx_http_chathistory_search_members))
    {
        return ngx_http_chathistory_api_error(r, NGX_HTTP_BAD_REQUEST,
                                               "the body has an unknown field");
    }

    rc = ngx_http_chathistory_search_query(r, body, s);

    if (rc == NGX_OK) {
        rc = ngx_http_chathistory_search_ids(r, body, s);
    }

    if (rc == NGX_OK) {
        rc = ngx_http_chathistory_search_langs(r, body, s);
    }

    if (rc == NGX_OK) {
        rc = ngx_http_chathistory_search_times(r, body, s);
    }

    if (rc == NGX_OK) {
        rc = ngx_http_chathistory_search_limit(r, body, s);
    }

    return rc;
}


/* The query and the mode. */
static ngx_int_t
ngx_http_chathistory_search_query(ngx_http_request_t *r, cJSON *body,
    ngx_http_chathistory_search_t *s)
{
    u_char      *p;
    cJSON       *query, *mode;
    const char  *m;

    query = cJSON_GetObjectItemCaseSensitive(body, "query");

    if (!cJSON_IsString(query)) {
        return ngx_http_chathistory_api_error(r, NGX_HTTP_BAD_REQUEST,
                                              "query is required");
    }

    for (p = (u_char *) query->valuestring; *p == ' ' || *p == '\t'
                                            || *p == '\n' || *p == '\r'; p++)
    {
        /* void */
    }

    if (*p == '\0'
        || ngx_http_chathistory_text_valid(query->valuestring,
                                           CH_SEARCH_QUERY_MAX) != NGX_OK)
    {
        return ngx_http_chathistory_api_error(r, NGX_HTTP_BAD_REQUEST,
                    "query must be a text of 1 to 2000 bytes");
    }

    s->query = query->valuestring;
    s->stmt = NGX_HTTP_CHATHISTORY_SQL_SEARCH_SEMANTIC;

    mode = cJSON_GetObjectItemCaseSensitive(body, "mode");

    if (mode == NULL || cJSON_IsNull(mode)) {
        return NGX_OK;
    }

    m = cJSON_IsString(mode) ? mode->valuestring : "";

    if (ngx_strcmp(m, "keyword") == 0) {
        s->stmt = NGX_HTTP_CHATHISTORY_SQL_SEARCH_KEYWORD;

    } else if (ngx_strcmp(m, "hybrid") == 0) {
        s->stmt = NGX_HTTP_CHATHISTORY_SQL_SEARCH_HYBRID;

    } else if (ngx_strcmp(m, "semantic") != 0) {
        return ngx_http_chathistory_api_error(r, NGX_HTTP_BAD_REQUEST,
                    "mode must be semantic, keyword or hybrid");
    }

    return NGX_OK;
}


/* org_id (the caller's own only, on /v1), session_id, and the sessions'
 * user_id and metadata. */
static ngx_int_t
ngx_http_chathistory_search_ids(ngx_http_request_t *r, cJSON *body,
    ngx_http_chathistory_search_t *s)
{
    ngx_int_t  rc;

    rc = ngx_http_chathistory_api_org_named(r, body, &s->org);
    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_chathistory_api_uuid(r,
                          cJSON_GetObjectItemCaseSensitive(body, "session_id"),
                          NULL, "session_id", &s->session);
    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_chathistory_api_user_id(r,
                             cJSON_GetObjectItemCaseSensitive(body, "user_id"),
                             NULL, &s->user_id);
    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_http_chathistory_api_metadata(r,
                            cJSON_GetObjectItemCaseSensitive(body, "metadata"),
                            NULL, &s->metadata);
}


static ngx_int_t
ngx_http_chathistory_search_langs(ngx_http_request_t *r, cJSON *body,
    ngx_http_chathistory_search_t *s)
{
    ngx_uint_t   i;
    cJSON       *item;
    char       **tag;

    static const char  *names[] = { "source_lang", "target_lang" };

    for (i = 0; i < 2; i++) {
        tag = i ? &s->target_lang : &s->source_lang;
        item = cJSON_GetObjectItemCaseSensitive(body, names[i]);

        if (item == NULL || cJSON_IsNull(item)) {
            continue;
        }

        if (!cJSON_IsString(item)
            || ngx_http_chathistory_lang_tag(r->pool, item->valuestring, tag)
               != NGX_OK)
        {
            return ngx_http_chathistory_api_error(r, NGX_HTTP_BAD_REQUEST,
                                    i ? "target_lang must be a BCP 47 tag"
                                      : "source_lang must be a BCP 47 tag");
        }
    }

    return NGX_OK;
}


/* from and to: RFC 3339 times, from not after to. */
static ngx_int_t
ngx_http_chathistory_search_times(ngx_http_request_t *r, cJSON *body,
    ngx_http_chathistory_search_t *s)
{
    cJSON       *from, *to;
    int64_t      f, t;
    ngx_int_t    rc;

    /* set only when given; clang cannot tell they are then compared */
    f = 0;
    t = 0;

    from = cJSON_GetObjectItemCaseSensitive(body, "from");
    to = cJSON_GetObjectItemCaseSensitive(body, "to");

    rc = ngx_http_chathistory_search_time(r, from, "from", &f);

    if (rc == NGX_OK) {
        rc = ngx_http_chathistory_search_time(r, to, "to", &t);
    }

    if (rc != NGX_OK) {
        return (rc == NGX_DECLINED) ? NGX_HTTP_BAD_REQUEST
                                    : NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    s->from = cJSON_IsString(from) ? from->valuestring : NULL;
    s->to = cJSON_IsString(to) ? to->valuestring : NULL;

    if (s->from && s->to && f > t) {
        return ngx_http_chathistory_api_error(r, NGX_HTTP_BAD_REQUEST,
                                              "from is after to");
    }

    return NGX_OK;
}


/* One of from and to, when given: NGX_OK, or the 400's message set. */
static ngx_int_t
ngx_http_chathistory_search_time(ngx_http_request_t *r, cJSON *item,
    const char *name, int64_t *micros)
{
    u_char      *p;
    const char  *why;

    if (item == NULL || cJSON_IsNull(item)) {
        return NGX_OK;
    }

    why = cJSON_IsString(item)
          ? ngx_http_chathistory_rfc3339(item->valuestring, micros)
          : "is not a string";

    if (why == NULL) {
        return NGX_OK;
    }

    p = ngx_pnalloc(r->pool, ngx_strlen(name) + ngx_strlen(why) + 2);
    if (p == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(p, "%s %s%Z", name, why);
    ngx_http_chathistory_api_error(r, NGX_HTTP_BAD_REQUEST, (char *) p);

    return NGX_DECLINED;
}


static ngx_int_t
ngx_http_chathistory_search_limit(ngx_http_request_t *r, cJSON *body,
    ngx_http_chathistory_search_t *s)
{
    cJSON       *item;
    ngx_uint_t   n;

    item = cJSON_GetObjectItemCaseSensitive(body, "limit");
    n = CH_SEARCH_DEFAULT;

    if (item != NULL && !cJSON_IsNull(item)) {
        /* the range first: casting a larger double to int is undefined */
        if (!cJSON_IsNumber(item)
            || item->valuedouble < 1 || item->valuedouble > CH_SEARCH_MAX
            || item->valuedouble != (double) (int) item->valuedouble)
        {
            return ngx_http_chathistory_api_error(r, NGX_HTTP_BAD_REQUEST,
                                 "limit must be an integer from 1 to 100");
        }

        n = (ngx_uint_t) item->valuedouble;
    }

    *ngx_sprintf((u_char *) s->limit, "%ui", n) = '\0';

    return NGX_OK;
}


static void
ngx_http_chathistory_search_done(ngx_http_chathistory_pg_query_t *q,
    PGresult *res)
{
    size_t               len;
    ngx_int_t            rc, i, n;
    ngx_buf_t           *b;
    ngx_chain_t          out;
    ngx_http_request_t  *r;

    r = q->request;

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = ngx_http_chathistory_api_query_failed(q, res);
        ngx_http_finalize_request(r, rc);
        return;
    }

    n = PQntuples(res);
    len = sizeof("{\"data\":[]}\n");

    for (i = 0; i < n; i++) {
        len += PQgetlength(res, i, 0) + 1;
    }

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    b->last = ngx_cpymem(b->last, "{\"data\":[", sizeof("{\"data\":[") - 1);

    for (i = 0; i < n; i++) {
        if (i) {
            *b->last++ = ',';
        }

        b->last = ngx_cpymem(b->last, PQgetvalue(res, i, 0),
                             PQgetlength(res, i, 0));
    }

    b->last = ngx_cpymem(b->last, "]}\n", 3);

    out.buf = b;
    out.next = NULL;

    rc = ngx_http_chathistory_send_json(r, NGX_HTTP_OK, &out);

    ngx_http_finalize_request(r, rc);
}
