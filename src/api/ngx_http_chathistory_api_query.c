
/*
 * What the API's resources share: running a statement for a request and
 * answering its failure, the organization and the ids a request names,
 * a row or a 404, keyset pages.
 */


#include "ngx_http_chathistory_api.h"
#include "ngx_http_chathistory_cursor.h"
#include "ngx_http_chathistory_json.h"
#include "ngx_http_chathistory_validate.h"
#include "ngx_http_chathistory_statements.h"


#define CH_PAGE_DEFAULT  20
#define CH_PAGE_MAX      100


static ngx_uint_t ngx_http_chathistory_api_replica(ngx_http_request_t *r,
    ngx_uint_t stmt);
static ngx_uint_t ngx_http_chathistory_api_consistency_primary(
    ngx_http_request_t *r);
static ngx_int_t ngx_http_chathistory_api_cursor(ngx_http_request_t *r,
    const char *micros, const char *id, ngx_str_t *out);
static ngx_uint_t ngx_http_chathistory_api_hex(u_char *p, size_t len);


ngx_int_t
ngx_http_chathistory_api_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *message)
{
    ngx_http_chathistory_api_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_chathistory_module);
    ctx->error = message;

    return status;
}


ngx_int_t
ngx_http_chathistory_api_query(ngx_http_request_t *r, ngx_uint_t stmt,
    const char **params, ngx_uint_t nparams,
    ngx_http_chathistory_pg_handler_pt handler)
{
    ngx_uint_t                        i;
    ngx_http_chathistory_pg_query_t  *q;

    q = ngx_http_chathistory_pg_query_create(r, stmt, handler,
                              ngx_http_get_module_ctx(r,
                                                ngx_http_chathistory_module));
    if (q == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* copied: a caller's parameters may be gone before the statement is
     * sent, after a wait for a connection or a prepare */
    for (i = 0; i < nparams; i++) {
        q->values[i] = params[i] ? ngx_http_chathistory_strdup(r->pool,
                                                               params[i])
                                 : NULL;

        if (params[i] && q->values[i] == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    q->nparams = (int) nparams;
    q->replica = ngx_http_chathistory_api_replica(r, stmt);

    ngx_http_chathistory_pg_query_run(q);

    return NGX_DONE;
}


/*
 * May a replica answer this statement: a read that
 * chathistory_database_replica_reads names, unless the request asks for
 * "X-Chathistory-Consistency: primary" (to read what it has just written:
 * a replica may be up to chathistory_database_replica_max_lag behind).
 */
static ngx_uint_t
ngx_http_chathistory_api_replica(ngx_http_request_t *r, ngx_uint_t stmt)
{
    ngx_uint_t                         reads;
    ngx_http_chathistory_main_conf_t  *cmcf;

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_chathistory_module);

    if (cmcf->replica_url.len == 0) {
        return 0;
    }

    switch (stmt) {

    case NGX_HTTP_CHATHISTORY_SQL_SEARCH_SEMANTIC:
    case NGX_HTTP_CHATHISTORY_SQL_SEARCH_KEYWORD:
    case NGX_HTTP_CHATHISTORY_SQL_SEARCH_HYBRID:
        reads = NGX_HTTP_CHATHISTORY_REPLICA_SEARCH;
        break;

    case NGX_HTTP_CHATHISTORY_SQL_SESSION_GET:
    case NGX_HTTP_CHATHISTORY_SQL_SESSION_LIST:
        reads = NGX_HTTP_CHATHISTORY_REPLICA_SESSIONS;
        break;

    case NGX_HTTP_CHATHISTORY_SQL_MESSAGE_LIST_ASC:
    case NGX_HTTP_CHATHISTORY_SQL_MESSAGE_LIST_DESC:
        reads = NGX_HTTP_CHATHISTORY_REPLICA_MESSAGES;
        break;

    default:
        return 0;
    }

    if (!(cmcf->replica_reads & reads)) {
        return 0;
    }

    return !ngx_http_chathistory_api_consistency_primary(r);
}


static ngx_uint_t
ngx_http_chathistory_api_consistency_primary(ngx_http_request_t *r)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return 0;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == sizeof("X-Chathistory-Consistency") - 1
            && ngx_strncasecmp(h[i].key.data,
                               (u_char *) "X-Chathistory-Consistency",
                               h[i].key.len) == 0
            && h[i].value.len == sizeof("primary") - 1
            && ngx_strncasecmp(h[i].value.data, (u_char *) "primary",
                               h[i].value.len) == 0)
        {
            return 1;
        }
    }
}


ngx_int_t
ngx_http_chathistory_api_query_failed(ngx_http_chathistory_pg_query_t *q,
    PGresult *res)
{
    const char          *state;
    ngx_http_request_t  *r;

    r = q->request;

    if (res == NULL) {
        return ngx_http_chathistory_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                   q->failure == NGX_HTTP_CHATHISTORY_PG_UNREACHABLE
                   ? "the database is unreachable"
                   : "the database is too busy to answer in time");
    }

    state = ngx_http_chathistory_pg_sqlstate(res);

    if (ngx_strncmp(state, "22", 2) == 0) {
        /* data exceptions: input the checks here let through */
        return ngx_http_chathistory_send_error(r, NGX_HTTP_BAD_REQUEST,
                                      "the database rejected a value");
    }

    ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                  "chathistory: query failed: %s",
                  PQresultErrorMessage(res));

    if (ngx_strcmp(state, "42P01") == 0 || ngx_strcmp(state, "42883") == 0
        || ngx_strncmp(state, "57", 2) == 0 || ngx_strncmp(state, "08", 2) == 0
        || ngx_strncmp(state, "53", 2) == 0)
    {
        /* schema not migrated, server shutting down or out of resources */
        return ngx_http_chathistory_send_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                    "the database cannot serve this now");
    }

    return ngx_http_chathistory_send_error(r,
                                     NGX_HTTP_INTERNAL_SERVER_ERROR,
                                     "the request failed unexpectedly");
}


/*
 * A statement's answer about one thing: NGX_OK when it is there; else
 * NGX_DONE, the request answered (the failure, or 404 with "missing") and
 * in *rc what to finalize it with.
 */
ngx_int_t
ngx_http_chathistory_api_found(ngx_http_chathistory_pg_query_t *q,
    PGresult *res, const char *missing, ngx_int_t *rc)
{
    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        *rc = ngx_http_chathistory_api_query_failed(q, res);
        return NGX_DONE;
    }

    if (PQntuples(res) == 0 || PQgetisnull(res, 0, 0)) {
        *rc = ngx_http_chathistory_send_error(q->request, NGX_HTTP_NOT_FOUND,
                                              missing);
        return NGX_DONE;
    }

    return NGX_OK;
}


/*
 * The organization a request names, or NULL when it names none: with an
 * API key, the key's own, and another's is 403.
 */
ngx_int_t
ngx_http_chathistory_api_org(ngx_http_request_t *r, const char *named,
    const char **org)
{
    ngx_http_chathistory_api_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_chathistory_module);

    if (ctx->scope_org != NULL && named != NULL
        && ngx_strcmp(named, ctx->scope_org) != 0)
    {
        return ngx_http_chathistory_api_error(r, NGX_HTTP_FORBIDDEN,
                                  "org_id is not the organization of the key");
    }

    *org = (named != NULL) ? named : ctx->scope_org;

    return NGX_OK;
}


/*
 * The organization a request names by org_id, in its body when it has
 * one, else in its query: the key's own when it names none, 400 when it
 * is no UUID, 403 when it is another's.
 */
ngx_int_t
ngx_http_chathistory_api_org_named(ngx_http_request_t *r, cJSON *body,
    const char **org)
{
    cJSON       *item;
    ngx_int_t    rc;
    ngx_str_t    arg;
    const char  *named;

    item = NULL;
    rc = NGX_DECLINED;

    if (body != NULL) {
        item = cJSON_GetObjectItemCaseSensitive(body, "org_id");

    } else {
        rc = ngx_http_chathistory_arg(r, "org_id", &arg);
        if (rc == NGX_ERROR) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    rc = ngx_http_chathistory_api_uuid(r, item, rc == NGX_OK ? &arg : NULL,
                                       "org_id", &named);
    if (rc != NGX_OK) {
        return rc;
    }

    return ngx_http_chathistory_api_org(r, named, org);
}


/*
 * A UUID member of the body (item), or the query argument of that name
 * when arg is set: its canonical text in *id, NULL when absent or null;
 * 400 "<name> must be a UUID" otherwise.
 */
ngx_int_t
ngx_http_chathistory_api_uuid(ngx_http_request_t *r, cJSON *item,
    ngx_str_t *arg, const char *name, const char **id)
{
    u_char                        *p;
    ngx_int_t                      rc;
    ngx_http_chathistory_uuid_t   *uuid;

    *id = NULL;

    if (arg == NULL && (item == NULL || cJSON_IsNull(item))) {
        return NGX_OK;
    }

    uuid = ngx_palloc(r->pool, sizeof(ngx_http_chathistory_uuid_t));
    if (uuid == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (arg != NULL) {
        rc = ngx_http_chathistory_uuid_parse(uuid, arg->data, arg->len);

    } else if (cJSON_IsString(item)) {
        rc = ngx_http_chathistory_uuid_parse(uuid,
                                         (u_char *) item->valuestring,
                                         ngx_strlen(item->valuestring));
    } else {
        rc = NGX_ERROR;
    }

    if (rc != NGX_OK) {
        p = ngx_pnalloc(r->pool, ngx_strlen(name) + sizeof(" must be a UUID"));
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        ngx_sprintf(p, "%s must be a UUID%Z", name);

        return ngx_http_chathistory_api_error(r, NGX_HTTP_BAD_REQUEST,
                                              (char *) p);
    }

    *id = (char *) uuid->text;

    return NGX_OK;
}


/*
 * Answer with the one JSON row a statement gave, or 404 when it gave
 * none; then finalize the request.
 */
void
ngx_http_chathistory_api_answer_row(ngx_http_chathistory_pg_query_t *q,
    PGresult *res, ngx_uint_t status, const char *missing)
{
    ngx_int_t  rc;

    if (ngx_http_chathistory_api_found(q, res, missing, &rc) == NGX_OK) {
        rc = ngx_http_chathistory_send_text(q->request, status,
                                            PQgetvalue(res, 0, 0),
                                            PQgetlength(res, 0, 0));
    }

    ngx_http_finalize_request(q->request, rc);
}


const char *
ngx_http_chathistory_api_unknown_member(cJSON *body, const char **names)
{
    cJSON        *item;
    const char  **n;

    cJSON_ArrayForEach(item, body) {
        for (n = names; *n; n++) {
            if (ngx_strcmp(item->string, *n) == 0) {
                break;
            }
        }

        if (*n == NULL) {
            return item->string;
        }
    }

    return NULL;
}


/*
 * ?cursor= and ?limit= of a list: the cursor's position (NULLs for the
 * start) and one more row than asked, which tells whether a next page
 * exists.
 */
ngx_int_t
ngx_http_chathistory_api_page_args(ngx_http_request_t *r,
    const char **micros, const char **id, const char **limit)
{
    u_char                         *p;
    ngx_int_t                       rc;
    ngx_str_t                       value;
    ngx_uint_t                      n;
    ngx_http_chathistory_cursor_t  *cursor;

    *micros = NULL;
    *id = NULL;

    cursor = ngx_palloc(r->pool, sizeof(ngx_http_chathistory_cursor_t));
    p = ngx_pnalloc(r->pool, NGX_INT_T_LEN + 1);

    if (cursor == NULL || p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_chathistory_arg(r, "cursor", &value) == NGX_OK) {
        if (ngx_http_chathistory_cursor_decode(&value, cursor) != NGX_OK) {
            return ngx_http_chathistory_api_error(r, NGX_HTTP_BAD_REQUEST,
                                                  "the cursor is not valid");
        }

        *micros = cursor->micros;
        *id = (char *) cursor->id.text;
    }

    rc = ngx_http_chathistory_arg_limit(r, CH_PAGE_DEFAULT, CH_PAGE_MAX, &n);

    if (rc == NGX_DECLINED) {
        return ngx_http_chathistory_api_error(r, NGX_HTTP_BAD_REQUEST,
                                 "limit must be an integer from 1 to 100");
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    *ngx_sprintf(p, "%ui", n + 1) = '\0';
    *limit = (char *) p;

    return NGX_OK;
}


/*
 * {"data": [...], "next_cursor": ...} from rows of (json, micros, id);
 * rows with a NULL json stand for none.
 */
ngx_int_t
ngx_http_chathistory_api_page(ngx_http_request_t *r, PGresult *res,
    const char *limit_plus_one)
{
    size_t       len;
    ngx_int_t    i, n, limit;
    ngx_buf_t   *b;
    ngx_str_t    next;
    ngx_chain_t  out;

    limit = ngx_atoi((u_char *) limit_plus_one,
                     ngx_strlen(limit_plus_one)) - 1;

    n = 0;
    while (n < PQntuples(res) && n < limit && !PQgetisnull(res, n, 0)) {
        n++;
    }

    ngx_str_set(&next, "null");

    if (n == limit && PQntuples(res) > limit) {
        if (ngx_http_chathistory_api_cursor(r, PQgetvalue(res, n - 1, 1),
                                            PQgetvalue(res, n - 1, 2), &next)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    len = sizeof("{\"data\":[],\"next_cursor\":}\n") - 1 + next.len;
    for (i = 0; i < n; i++) {
        len += PQgetlength(res, i, 0) + 1;
    }

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_cpymem(b->last, "{\"data\":[", sizeof("{\"data\":[") - 1);

    for (i = 0; i < n; i++) {
        if (i) {
            *b->last++ = ',';
        }

        b->last = ngx_cpymem(b->last, PQgetvalue(res, i, 0),
                             PQgetlength(res, i, 0));
    }

    b->last = ngx_sprintf(b->last, "],\"next_cursor\":%V}\n", &next);

    out.buf = b;
    out.next = NULL;

    return ngx_http_chathistory_send_json(r, NGX_HTTP_OK, &out);
}


/* The next page's cursor, quoted as a JSON string. */
static ngx_int_t
ngx_http_chathistory_api_cursor(ngx_http_request_t *r, const char *micros,
    const char *id, ngx_str_t *out)
{
    u_char     *p;
    ngx_str_t   cursor;

    if (ngx_http_chathistory_cursor_encode(r->pool, micros, id, &cursor)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    p = ngx_pnalloc(r->pool, cursor.len + 2);
    if (p == NULL) {
        return NGX_ERROR;
    }

    p[0] = '"';
    ngx_memcpy(p + 1, cursor.data, cursor.len);
    p[cursor.len + 1] = '"';

    out->data = p;
    out->len = cursor.len + 2;

    return NGX_OK;
}


/* Where the resources of this location live: "/api/sessions/". */
ngx_int_t
ngx_http_chathistory_api_sessions_url(ngx_http_request_t *r, ngx_str_t *url)
{
    u_char                           *p;
    ngx_http_chathistory_loc_conf_t  *clcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_chathistory_module);

    p = ngx_pnalloc(r->pool, clcf->api_prefix.len + sizeof("/sessions/"));
    if (p == NULL) {
        return NGX_ERROR;
    }

    url->data = p;
    p = ngx_cpymem(p, clcf->api_prefix.data, clcf->api_prefix.len);

    if (p == url->data || p[-1] != '/') {
        *p++ = '/';
    }

    p = ngx_cpymem(p, "sessions/", sizeof("sessions/") - 1);
    *p = '\0';
    url->len = p - url->data;

    return NGX_OK;
}



/*
 * A user_id member of the body (item), or the query argument when arg is
 * set: 1 to 200 printable characters, in *user_id; NULL when absent or
 * null; 400 otherwise.
 */
ngx_int_t
ngx_http_chathistory_api_user_id(ngx_http_request_t *r, cJSON *item,
    ngx_str_t *arg, const char **user_id)
{
    u_char  *p;
    size_t   len;

    *user_id = NULL;

    if (arg == NULL && (item == NULL || cJSON_IsNull(item))) {
        return NGX_OK;
    }

    if (arg != NULL) {
        p = arg->data;
        len = arg->len;

    } else if (cJSON_IsString(item)) {
        p = (u_char *) item->valuestring;
        len = ngx_strlen(item->valuestring);

    } else {
        p = NULL;
        len = 0;
    }

    if (p == NULL
        || ngx_http_chathistory_user_id_valid(p, len,
                                   NGX_HTTP_CHATHISTORY_USER_ID_MAX) != NGX_OK)
    {
        return ngx_http_chathistory_api_error(r, NGX_HTTP_BAD_REQUEST,
                   "user_id must be 1 to 200 printable characters of UTF-8");
    }

    *user_id = (arg != NULL) ? (char *) arg->data : item->valuestring;

    return NGX_OK;
}


/*
 * A metadata member of the body (item), or the query argument (URL-encoded
 * JSON) when arg is set: a JSON object of at most 8 KiB as compact JSON,
 * whose text goes in *metadata; NULL when absent or null; 400 otherwise.
 */
ngx_int_t
ngx_http_chathistory_api_metadata(ngx_http_request_t *r, cJSON *item,
    ngx_str_t *arg, const char **metadata)
{
    char       *text;
    size_t      len;
    ngx_int_t   valid;

    *metadata = NULL;

    if (arg != NULL) {
        item = ngx_http_chathistory_json_parse(r, arg);

        if (item == NULL || !cJSON_IsObject(item)) {
            return ngx_http_chathistory_api_error(r, NGX_HTTP_BAD_REQUEST,
                   "metadata must be a URL-encoded JSON object");
        }

    } else if (item == NULL || cJSON_IsNull(item)) {
        return NGX_OK;
    }

    if (!cJSON_IsObject(item)) {
        return ngx_http_chathistory_api_error(r, NGX_HTTP_BAD_REQUEST,
                   "metadata must be a JSON object");
    }

    text = cJSON_PrintUnformatted(item);
    if (text == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* cJSON passes on bytes that are not UTF-8, which jsonb refuses */
    valid = ngx_http_chathistory_text_valid(text, (size_t) -1);
    len = ngx_strlen(text);

    if (valid == NGX_OK && len <= NGX_HTTP_CHATHISTORY_METADATA_MAX) {
        *metadata = ngx_http_chathistory_strdup(r->pool, text);
    }

    cJSON_free(text);

    if (valid != NGX_OK) {
        return ngx_http_chathistory_api_error(r, NGX_HTTP_BAD_REQUEST,
                   "metadata must be UTF-8");
    }

    if (len > NGX_HTTP_CHATHISTORY_METADATA_MAX) {
        return ngx_http_chathistory_api_error(r, NGX_HTTP_BAD_REQUEST,
                   "metadata must be at most 8192 bytes as compact JSON");
    }

    return (*metadata != NULL) ? NGX_OK : NGX_HTTP_INTERNAL_SERVER_ERROR;
}


/* ETag: the quoted digest a statement gave with the representation. */
ngx_int_t
ngx_http_chathistory_api_etag(ngx_http_request_t *r, const char *digest)
{
    u_char           *p;
    size_t            len;
    ngx_table_elt_t  *h;

    len = ngx_strlen(digest);

    h = ngx_list_push(&r->headers_out.headers);
    p = ngx_pnalloc(r->pool, len + 2);

    if (h == NULL || p == NULL) {
        return NGX_ERROR;
    }

    p[0] = '"';
    ngx_memcpy(p + 1, digest, len);
    p[len + 1] = '"';

    h->hash = 1;
    ngx_str_set(&h->key, "ETag");
    h->value.data = p;
    h->value.len = len + 2;

    r->headers_out.etag = h;

    return NGX_OK;
}


/*
 * The entity tags of an If-Match or If-None-Match header as a list of the
 * digests they quote, comma-separated (they are hex: no quoting needed),
 * into *tags; NULL for "*". Weak tags count only when weak is set (the
 * weak comparison of If-None-Match); what is no tag of ours is left out,
 * as it can match nothing.
 */
ngx_int_t
ngx_http_chathistory_api_etags(ngx_http_request_t *r, ngx_table_elt_t *h,
    ngx_uint_t weak, const char **tags)
{
    u_char  *p, *last, *out, *start, *end;

    p = h->value.data;
    last = p + h->value.len;

    out = ngx_pnalloc(r->pool, h->value.len + 1);
    if (out == NULL) {
        return NGX_ERROR;
    }

    *tags = (char *) out;
    start = out;

    while (p < last) {
        while (p < last && (*p == ' ' || *p == '\t' || *p == ',')) {
            p++;
        }

        if (p < last && *p == '*') {
            *tags = NULL;
            return NGX_OK;
        }

        if (last - p > 2 && p[0] == 'W' && p[1] == '/') {
            p += 2;

            if (!weak) {
                p = ngx_strlchr(p + 1, last, '"');
                p = (p == NULL) ? last : p + 1;
                continue;
            }
        }

        if (p == last || *p != '"') {
            p = ngx_strlchr(p, last, ',');
            p = (p == NULL) ? last : p;
            continue;
        }

        end = ngx_strlchr(p + 1, last, '"');
        if (end == NULL) {
            break;
        }

        if (end - p - 1 == 32 && ngx_http_chathistory_api_hex(p + 1, 32)) {
            if (out != start) {
                *out++ = ',';
            }

            out = ngx_cpymem(out, p + 1, 32);
        }

        p = end + 1;
    }

    *out = '\0';

    return NGX_OK;
}


static ngx_uint_t
ngx_http_chathistory_api_hex(u_char *p, size_t len)
{
    while (len--) {
        if (!isxdigit(*p++)) {
            return 0;
        }
    }

    return 1;
}


/* Whether a digest (32 hex digits) is in a list that _etags() made. */
ngx_uint_t
ngx_http_chathistory_api_etag_in(const char *tags, const char *digest)
{
    const char  *p;

    if (tags == NULL) {
        return 1;
    }

    for (p = tags; ngx_strlen(p) >= 32; p += 33) {
        if (ngx_strncmp(p, digest, 32) == 0) {
            return 1;
        }

        if (p[32] == '\0') {
            break;
        }
    }

    return 0;
}
