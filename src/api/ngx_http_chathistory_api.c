
/*
 * Routing of API requests: the path after the location's prefix picks a
 * resource, the method picks its handler; bodies are read and parsed
 * before the handler runs.
 */


#include "ngx_http_chathistory_api.h"
#include "ngx_http_chathistory_auth.h"
#include "ngx_http_chathistory_cors.h"
#include "ngx_http_chathistory_counters.h"
#include "ngx_http_chathistory_json.h"
#include "ngx_http_chathistory_validate.h"


typedef ngx_int_t (*ngx_http_chathistory_api_pt)(ngx_http_request_t *r);


typedef struct {
    ngx_uint_t                    method;
    ngx_http_chathistory_api_pt   handler;
} ngx_http_chathistory_method_t;


typedef struct {
    const char                   *pattern;   /* ":s" and ":m" are ids */
    const char                   *allow;
    ngx_http_chathistory_method_t methods[4];
} ngx_http_chathistory_route_t;


static ngx_int_t ngx_http_chathistory_api_split(ngx_http_request_t *r,
    ngx_http_chathistory_api_ctx_t *ctx);
static ngx_http_chathistory_route_t *ngx_http_chathistory_api_route(
    ngx_http_chathistory_api_ctx_t *ctx);
static ngx_int_t ngx_http_chathistory_api_ids(ngx_http_request_t *r,
    ngx_http_chathistory_api_ctx_t *ctx, ngx_http_chathistory_route_t *rt);
static ngx_int_t ngx_http_chathistory_api_not_allowed(ngx_http_request_t *r,
    ngx_http_chathistory_route_t *rt);
static ngx_int_t ngx_http_chathistory_api_read_body(ngx_http_request_t *r);
static void ngx_http_chathistory_api_body_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_chathistory_api_parse_body(ngx_http_request_t *r,
    ngx_http_chathistory_api_ctx_t *ctx);
static ngx_int_t ngx_http_chathistory_api_json_strings(ngx_http_request_t *r,
    ngx_str_t *text);
static ngx_int_t ngx_http_chathistory_api_run(ngx_http_request_t *r,
    ngx_http_chathistory_api_ctx_t *ctx);
static ngx_int_t ngx_http_chathistory_api_json_type(ngx_http_request_t *r);
static ngx_int_t ngx_http_chathistory_api_log(ngx_http_request_t *r);


static ngx_http_chathistory_route_t  ngx_http_chathistory_routes[] = {

    { "sessions", "GET, HEAD, POST",
      { { NGX_HTTP_GET|NGX_HTTP_HEAD, ngx_http_chathistory_session_list },
        { NGX_HTTP_POST, ngx_http_chathistory_session_create },
        { 0, NULL } } },

    { "sessions/:s", "GET, HEAD, PATCH, DELETE",
      { { NGX_HTTP_GET|NGX_HTTP_HEAD, ngx_http_chathistory_session_get },
        { NGX_HTTP_PATCH, ngx_http_chathistory_session_update },
        { NGX_HTTP_DELETE, ngx_http_chathistory_session_delete },
        { 0, NULL } } },

    { "sessions/:s/messages", "GET, HEAD",
      { { NGX_HTTP_GET|NGX_HTTP_HEAD, ngx_http_chathistory_message_list },
        { 0, NULL } } },

    { "sessions/:s/messages/:m/audio", "GET, HEAD",
      { { NGX_HTTP_GET|NGX_HTTP_HEAD, ngx_http_chathistory_message_audio },
        { 0, NULL } } },

    { "search", "POST",
      { { NGX_HTTP_POST, ngx_http_chathistory_search },
        { 0, NULL } } },

    { "settings/retention", "GET, HEAD, PUT",
      { { NGX_HTTP_GET|NGX_HTTP_HEAD, ngx_http_chathistory_retention_get },
        { NGX_HTTP_PUT, ngx_http_chathistory_retention_set },
        { 0, NULL } } },

    { "health", "GET, HEAD",
      { { NGX_HTTP_GET|NGX_HTTP_HEAD, ngx_http_chathistory_health },
        { 0, NULL } } },

    { NULL, NULL, { { 0, NULL } } }
};


/* every route has its row of request counters, 0 being "none" */
typedef char ngx_http_chathistory_routes_counted[
    sizeof(ngx_http_chathistory_routes) / sizeof(ngx_http_chathistory_routes[0])
    < NGX_HTTP_CHATHISTORY_COUNTED_ROUTES ? 1 : -1];


/* Requests to the API are counted by route and status when they are done. */
ngx_int_t
ngx_http_chathistory_api_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_chathistory_api_log;

    return NGX_OK;
}


static ngx_int_t
ngx_http_chathistory_api_log(ngx_http_request_t *r)
{
    ngx_http_chathistory_api_ctx_t   *ctx;
    ngx_http_chathistory_loc_conf_t  *clcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_chathistory_module);

    if (!clcf->api) {
        return NGX_OK;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_chathistory_module);

    ngx_http_chathistory_count_request(ctx ? ctx->route : 0,
                                       r->err_status ? r->err_status
                                                     : r->headers_out.status);

    return NGX_OK;
}


ngx_int_t
ngx_http_chathistory_api_handler(ngx_http_request_t *r)
{
    ngx_int_t                        rc;
    ngx_http_chathistory_route_t    *rt;
    ngx_http_chathistory_method_t   *m;
    ngx_http_chathistory_api_ctx_t  *ctx;

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_chathistory_api_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_set_ctx(r, ctx, ngx_http_chathistory_module);

    /* a key confines the request to its organization */
    ctx->scope_org = ngx_http_chathistory_auth_org(r);

    rt = NULL;

    if (ngx_http_chathistory_api_split(r, ctx) == NGX_OK) {
        rt = ngx_http_chathistory_api_route(ctx);
    }

    if (rt == NULL) {
        return ngx_http_discard_request_body(r) == NGX_OK
               ? ngx_http_chathistory_send_error(r, NGX_HTTP_NOT_FOUND,
                                                 "no such resource")
               : NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->route = rt - ngx_http_chathistory_routes + 1;

    if (ngx_http_chathistory_cors_preflight(r)) {
        return ngx_http_chathistory_cors_answer(r, rt->allow);
    }

    for (m = rt->methods; m->method; m++) {
        if (m->method & r->method) {
            break;
        }
    }

    if (m->method == 0) {
        return ngx_http_chathistory_api_not_allowed(r, rt);
    }

    ctx->handler = m->handler;

    rc = ngx_http_chathistory_api_ids(r, ctx, rt);
    if (rc != NGX_OK) {
        return ngx_http_discard_request_body(r) == NGX_OK
               ? ngx_http_chathistory_send_error(r, rc, ctx->error)
               : NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (r->method & (NGX_HTTP_POST|NGX_HTTP_PATCH|NGX_HTTP_PUT)) {
        return ngx_http_chathistory_api_read_body(r);
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_chathistory_api_run(r, ctx);

    if (rc == NGX_DONE) {
        /* the query's handler finalizes the request */
        r->main->count++;
    }

    return rc;
}


/* Split the path after the location's prefix into its segments. */
static ngx_int_t
ngx_http_chathistory_api_split(ngx_http_request_t *r,
    ngx_http_chathistory_api_ctx_t *ctx)
{
    u_char                           *p, *last, *start;
    ngx_http_chathistory_loc_conf_t  *clcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_chathistory_module);

    if (r->uri.len < clcf->api_prefix.len) {
        return NGX_DECLINED;
    }

    p = r->uri.data + clcf->api_prefix.len;
    last = r->uri.data + r->uri.len;

    while (p < last && *p == '/') {
        p++;
    }

    /* one trailing slash is forgiven */
    if (last > p && last[-1] == '/') {
        last--;
    }

    while (p < last) {
        if (ctx->nsegments == NGX_HTTP_CHATHISTORY_MAX_SEGMENTS) {
            return NGX_DECLINED;
        }

        start = p;
        p = ngx_strlchr(p, last, '/');
        if (p == NULL) {
            p = last;
        }

        if (p == start) {
            return NGX_DECLINED;
        }

        ctx->segments[ctx->nsegments].data = start;
        ctx->segments[ctx->nsegments].len = p - start;
        ctx->nsegments++;
        p++;
    }

    return NGX_OK;
}


const char *
ngx_http_chathistory_api_route_pattern(ngx_uint_t n)
{
    if (n == 0
        || n >= sizeof(ngx_http_chathistory_routes)
                / sizeof(ngx_http_chathistory_routes[0]))
    {
        return NULL;
    }

    return ngx_http_chathistory_routes[n - 1].pattern;
}


static ngx_http_chathistory_route_t *
ngx_http_chathistory_api_route(ngx_http_chathistory_api_ctx_t *ctx)
{
    size_t                         len;
    ngx_uint_t                     i;
    const char                    *p, *slash;
    ngx_http_chathistory_route_t  *rt;

    for (rt = ngx_http_chathistory_routes; rt->pattern; rt++) {

        p = rt->pattern;

        for (i = 0; i < ctx->nsegments && *p; i++) {
            slash = ngx_strchr(p, '/');
            len = slash ? (size_t) (slash - p) : ngx_strlen(p);

            if (p[0] != ':'
                && (len != ctx->segments[i].len
                    || ngx_strncmp(p, ctx->segments[i].data, len) != 0))
            {
                break;
            }

            p += len + (slash ? 1 : 0);
            if (slash == NULL) {
                p = "";
            }
        }

        if (i == ctx->nsegments && *p == '\0') {
            return rt;
        }
    }

    return NULL;
}


/* Ids in the path must be well-formed: 400 before any database work. */
static ngx_int_t
ngx_http_chathistory_api_ids(ngx_http_request_t *r,
    ngx_http_chathistory_api_ctx_t *ctx, ngx_http_chathistory_route_t *rt)
{
    ngx_uint_t                    i;
    const char                   *p;
    ngx_str_t                    *seg;
    ngx_http_chathistory_uuid_t  *id;

    for (i = 0, p = rt->pattern; *p; p++) {
        if (*p == '/') {
            i++;
            continue;
        }

        if (*p != ':') {
            continue;
        }

        id = (p[1] == 's') ? &ctx->session_id : &ctx->message_id;
        seg = &ctx->segments[i];

        if (ngx_http_chathistory_uuid_parse(id, seg->data, seg->len)
            != NGX_OK)
        {
            return ngx_http_chathistory_api_error(r, NGX_HTTP_BAD_REQUEST,
                                          "the id in the path is not a UUID");
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_chathistory_api_not_allowed(ngx_http_request_t *r,
    ngx_http_chathistory_route_t *rt)
{
    ngx_table_elt_t  *h;

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Allow");
    h->value.data = (u_char *) rt->allow;
    h->value.len = ngx_strlen(rt->allow);

    return ngx_http_chathistory_send_error(r, NGX_HTTP_NOT_ALLOWED,
                                 "this method is not allowed on the resource");
}


static ngx_int_t
ngx_http_chathistory_api_read_body(ngx_http_request_t *r)
{
    ngx_int_t                         rc;
    ngx_http_chathistory_loc_conf_t  *clcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_chathistory_module);

    if (ngx_http_chathistory_api_json_type(r) != NGX_OK) {
        return ngx_http_discard_request_body(r) == NGX_OK
               ? ngx_http_chathistory_send_error(r,
                     NGX_HTTP_UNSUPPORTED_MEDIA_TYPE,
                     "the body must be application/json")
               : NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (r->headers_in.content_length_n > (off_t) clcf->api_max_body) {
        if (ngx_http_discard_request_body(r) != NGX_OK) {
            r->keepalive = 0;
        }

        return ngx_http_chathistory_send_error(r,
                                         NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                         "the body is too large");
    }

    /* JSON is parsed in memory: the buffer is sized to hold the limit */
    r->request_body_in_single_buf = 1;

    rc = ngx_http_read_client_request_body(r,
                                        ngx_http_chathistory_api_body_handler);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


static void
ngx_http_chathistory_api_body_handler(ngx_http_request_t *r)
{
    ngx_int_t                        rc;
    ngx_http_chathistory_api_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_chathistory_module);

    rc = ngx_http_chathistory_api_parse_body(r, ctx);

    if (rc == NGX_OK) {
        rc = ngx_http_chathistory_api_run(r, ctx);

    } else if (ctx->error != NULL) {
        rc = ngx_http_chathistory_send_error(r, rc, ctx->error);
    }

    if (rc == NGX_DONE) {
        /* the query's handler finalizes the request */
        return;
    }

    ngx_http_finalize_request(r, rc);
}


static ngx_int_t
ngx_http_chathistory_api_parse_body(ngx_http_request_t *r,
    ngx_http_chathistory_api_ctx_t *ctx)
{
    u_char                           *p;
    size_t                            len;
    ngx_str_t                         text;
    ngx_chain_t                      *cl;
    ngx_http_chathistory_loc_conf_t  *clcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_chathistory_module);

    len = 0;

    for (cl = r->request_body ? r->request_body->bufs : NULL; cl; cl = cl->next)
    {
        /* the buffer holds the limit: a body in a file is over it */
        if (cl->buf->in_file) {
            len = clcf->api_max_body + 1;
            break;
        }

        len += cl->buf->last - cl->buf->pos;
    }

    if (len > clcf->api_max_body) {
        r->keepalive = 0;
        return ngx_http_chathistory_api_error(r,
                                         NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                         "the body is too large");
    }

    /* what nginx read with the header and the rest may be two buffers */
    p = ngx_pnalloc(r->pool, len + 1);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    text.data = p;
    text.len = len;

    for (cl = r->request_body ? r->request_body->bufs : NULL; cl; cl = cl->next)
    {
        p = ngx_cpymem(p, cl->buf->pos, cl->buf->last - cl->buf->pos);
    }

    switch (ngx_http_chathistory_api_json_strings(r, &text)) {
    case NGX_OK:
        break;
    case NGX_DECLINED:
        return NGX_HTTP_BAD_REQUEST;
    default:
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->body = ngx_http_chathistory_json_parse(r, &text);

    if (ctx->body == NULL || !cJSON_IsObject(ctx->body)) {
        return ngx_http_chathistory_api_error(r, NGX_HTTP_BAD_REQUEST,
                                          "the body must be a JSON object");
    }

    return NGX_OK;
}


/* A JSON string with a raw control character or \u0000 is 400, by name. */
static ngx_int_t
ngx_http_chathistory_api_json_strings(ngx_http_request_t *r, ngx_str_t *text)
{
    u_char      *p, *last;
    ngx_str_t    member;
    const char  *found;

    found = ngx_http_chathistory_json_strings_check(text, &member);

    if (found == NULL) {
        return NGX_OK;
    }

    /* the name goes into the message only when it is plainly a name */
    if (member.len > 64) {
        member.len = 0;
    }

    for (p = member.data, last = p + member.len; p < last; p++) {
        if (!(isalnum(*p) || *p == '_' || *p == '-' || *p == '.')) {
            member.len = 0;
            break;
        }
    }

    p = ngx_pnalloc(r->pool, member.len + 128);
    if (p == NULL) {
        return NGX_ERROR;
    }

    if (member.len) {
        last = ngx_sprintf(p, "\"%V\" holds %s", &member, found);

    } else {
        last = ngx_sprintf(p, "a string of the body holds %s", found);
    }

    ngx_sprintf(last, ", which %s%Z",
                (found == ngx_http_chathistory_json_nul)
                ? "text cannot store" : "JSON strings must escape");

    ngx_http_chathistory_api_error(r, NGX_HTTP_BAD_REQUEST, (char *) p);

    return NGX_DECLINED;
}


static ngx_int_t
ngx_http_chathistory_api_run(ngx_http_request_t *r,
    ngx_http_chathistory_api_ctx_t *ctx)
{
    ngx_int_t  rc;

    /* notice a client that leaves while the database works */
    r->read_event_handler = ngx_http_test_reading;

    rc = ctx->handler(r);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE && ctx->error != NULL) {
        return ngx_http_chathistory_send_error(r, rc, ctx->error);
    }

    return rc;
}


/* A body must be JSON; a missing Content-Type is taken to be JSON. */
static ngx_int_t
ngx_http_chathistory_api_json_type(ngx_http_request_t *r)
{
    size_t            len;
    ngx_table_elt_t  *ct;

    ct = r->headers_in.content_type;

    if (ct == NULL) {
        return NGX_OK;
    }

    len = ct->value.len;

    if (ngx_strlchr(ct->value.data, ct->value.data + len, ';') != NULL) {
        len = ngx_strlchr(ct->value.data, ct->value.data + len, ';')
              - ct->value.data;
    }

    while (len && ct->value.data[len - 1] == ' ') {
        len--;
    }

    if (len == sizeof("application/json") - 1
        && ngx_strncasecmp(ct->value.data, (u_char *) "application/json",
                           len) == 0)
    {
        return NGX_OK;
    }

    return NGX_DECLINED;
}
