
/*
 * What every answer of the API carries: the request's id (X-Request-Id)
 * and, with chathistory_cors_origin, the CORS headers; the preflight
 * (OPTIONS) of a cross-origin request.
 */


#include "ngx_http_chathistory_cors.h"
#include "ngx_http_chathistory_json.h"


static ngx_int_t ngx_http_chathistory_cors_header_filter(
    ngx_http_request_t *r);
static ngx_str_t *ngx_http_chathistory_cors_allowed(ngx_http_request_t *r,
    ngx_http_chathistory_loc_conf_t *clcf);
static ngx_int_t ngx_http_chathistory_cors_add(ngx_http_request_t *r,
    const char *name, ngx_str_t *value);
static ngx_table_elt_t *ngx_http_chathistory_cors_header(
    ngx_http_request_t *r, const char *name);
static ngx_uint_t ngx_http_chathistory_cors_sent(ngx_http_request_t *r);


/* what a browser may send and read beyond the CORS-safelisted headers */
static ngx_str_t  ngx_http_chathistory_cors_request_headers =
    ngx_string("Authorization, Content-Type, If-Match, If-None-Match, "
               "X-API-Key");

static ngx_str_t  ngx_http_chathistory_cors_exposed =
    ngx_string("ETag, Location, X-Request-Id, Allow, Retry-After, "
               "WWW-Authenticate");

static ngx_str_t  ngx_http_chathistory_cors_any = ngx_string("*");

static ngx_str_t  ngx_http_chathistory_cors_vary = ngx_string("Origin");


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;


ngx_int_t
ngx_http_chathistory_cors_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_chathistory_cors_header_filter;

    return NGX_OK;
}


/*
 * An answer of a location with chathistory_api: its id, whatever part of
 * nginx made it (a handler, the key gate, an error page of the location),
 * and the CORS headers when its origin is allowed.
 */
static ngx_int_t
ngx_http_chathistory_cors_header_filter(ngx_http_request_t *r)
{
    ngx_str_t                        id, *origin;
    ngx_http_chathistory_loc_conf_t  *clcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_chathistory_module);

    if (r != r->main || clcf == NULL || !clcf->api
        || ngx_http_chathistory_cors_sent(r))
    {
        return ngx_http_next_header_filter(r);
    }

    if (ngx_http_chathistory_request_id(r, &id) != NGX_OK
        || ngx_http_chathistory_cors_add(r, "X-Request-Id", &id) != NGX_OK)
    {
        return NGX_ERROR;
    }

    origin = ngx_http_chathistory_cors_allowed(r, clcf);

    /* with listed origins, whether the answer allows a page depends on the
     * page's Origin: caches must keep them apart */
    if (clcf->cors_origins != NULL && origin != &ngx_http_chathistory_cors_any
        && ngx_http_chathistory_cors_add(r, "Vary",
                                         &ngx_http_chathistory_cors_vary)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (origin != NULL) {
        if (ngx_http_chathistory_cors_add(r, "Access-Control-Allow-Origin",
                                          origin)
            != NGX_OK
            || ngx_http_chathistory_cors_add(r,
                                   "Access-Control-Expose-Headers",
                                   &ngx_http_chathistory_cors_exposed)
               != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return ngx_http_next_header_filter(r);
}


/*
 * Whether the headers are there already: a filter that turns the answer
 * into an error page (the range filter's 416) runs the header filters a
 * second time.
 */
static ngx_uint_t
ngx_http_chathistory_cors_sent(ngx_http_request_t *r)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    part = &r->headers_out.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return 0;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].hash != 0 && h[i].key.len == sizeof("X-Request-Id") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "X-Request-Id",
                               h[i].key.len) == 0)
        {
            return 1;
        }
    }
}


/*
 * The Access-Control-Allow-Origin of the request: "*" when any origin is
 * allowed, else its own Origin when that is listed, else NULL.
 */
static ngx_str_t *
ngx_http_chathistory_cors_allowed(ngx_http_request_t *r,
    ngx_http_chathistory_loc_conf_t *clcf)
{
    ngx_str_t        *o;
    ngx_uint_t        i;
    ngx_table_elt_t  *origin;

    if (clcf->cors_origins == NULL) {
        return NULL;
    }

    o = clcf->cors_origins->elts;

    if (o[0].len == 1 && o[0].data[0] == '*') {
        return &ngx_http_chathistory_cors_any;
    }

    origin = ngx_http_chathistory_cors_header(r, "Origin");
    if (origin == NULL) {
        return NULL;
    }

    for (i = 0; i < clcf->cors_origins->nelts; i++) {
        if (o[i].len == origin->value.len
            && ngx_strncasecmp(o[i].data, origin->value.data, o[i].len) == 0)
        {
            return &origin->value;
        }
    }

    return NULL;
}


/*
 * A CORS preflight: OPTIONS with Origin and Access-Control-Request-Method
 * on a location that allows cross-origin requests. It carries no key,
 * so the key gate lets it by; it reaches no data.
 */
ngx_uint_t
ngx_http_chathistory_cors_preflight(ngx_http_request_t *r)
{
    ngx_http_chathistory_loc_conf_t  *clcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_chathistory_module);

    return r->method == NGX_HTTP_OPTIONS && clcf->api
           && clcf->cors_origins != NULL
           && ngx_http_chathistory_cors_header(r, "Origin") != NULL
           && ngx_http_chathistory_cors_header(r,
                                     "Access-Control-Request-Method") != NULL;
}


/* A request header by name (nginx keeps no field for these). */
static ngx_table_elt_t *
ngx_http_chathistory_cors_header(ngx_http_request_t *r, const char *name)
{
    size_t            len;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    len = ngx_strlen(name);
    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                return NULL;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == len
            && ngx_strncasecmp(h[i].key.data, (u_char *) name, len) == 0)
        {
            return &h[i];
        }
    }
}


/* 204 to a preflight, with the methods of the resource ("allow"). */
ngx_int_t
ngx_http_chathistory_cors_answer(ngx_http_request_t *r, const char *allow)
{
    u_char                           *p;
    ngx_str_t                         value;
    ngx_http_chathistory_loc_conf_t  *clcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_chathistory_module);

    if (ngx_http_discard_request_body(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    value.data = (u_char *) allow;
    value.len = ngx_strlen(allow);

    if (ngx_http_chathistory_cors_add(r, "Access-Control-Allow-Methods",
                                      &value)
        != NGX_OK
        || ngx_http_chathistory_cors_add(r, "Access-Control-Allow-Headers",
                                &ngx_http_chathistory_cors_request_headers)
           != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    value.data = p;
    value.len = ngx_sprintf(p, "%T", clcf->cors_max_age) - p;

    if (ngx_http_chathistory_cors_add(r, "Access-Control-Max-Age", &value)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_http_chathistory_send_no_content(r);
}


static ngx_int_t
ngx_http_chathistory_cors_add(ngx_http_request_t *r, const char *name,
    ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) name;
    h->key.len = ngx_strlen(name);
    h->value = *value;

    return NGX_OK;
}


/* chathistory_cors_origin off | * | <origin> ...; */
char *
ngx_http_chathistory_cors_origin(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_chathistory_loc_conf_t  *clcf = conf;

    ngx_str_t   *value, *o;
    ngx_uint_t   i;

    if (clcf->cors_origins != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "off") == 0) {
        clcf->cors_origins = NULL;
        return NGX_CONF_OK;
    }

    clcf->cors_origins = ngx_array_create(cf->pool, cf->args->nelts - 1,
                                          sizeof(ngx_str_t));
    if (clcf->cors_origins == NULL) {
        return NGX_CONF_ERROR;
    }

    for (i = 1; i < cf->args->nelts; i++) {

        if (value[i].len == 1 && value[i].data[0] == '*') {
            if (cf->args->nelts != 2) {
                return "takes \"*\" alone";
            }

        } else if (ngx_strncmp(value[i].data, "http://", 7) != 0
                   && ngx_strncmp(value[i].data, "https://", 8) != 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid origin \"%V\": an origin is "
                               "scheme://host[:port]", &value[i]);
            return NGX_CONF_ERROR;
        }

        if (value[i].data[value[i].len - 1] == '/') {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid origin \"%V\": no path, not even "
                               "\"/\"", &value[i]);
            return NGX_CONF_ERROR;
        }

        o = ngx_array_push(clcf->cors_origins);
        if (o == NULL) {
            return NGX_CONF_ERROR;
        }

        *o = value[i];
    }

    return NGX_CONF_OK;
}
