
/*
 * JSON bodies in, JSON answers and errors out.
 */


#include "ngx_http_chathistory_json.h"
#include "ngx_http_chathistory_module.h"


typedef struct {
    ngx_uint_t   status;
    const char  *code;
} ngx_http_chathistory_error_code_t;


static void ngx_http_chathistory_json_cleanup(void *data);
static u_char *ngx_http_chathistory_json_string_end(u_char *p, u_char *last);
static ngx_uint_t ngx_http_chathistory_json_is_name(u_char *end, u_char *last);
static const char *ngx_http_chathistory_error_code(ngx_uint_t status);


static ngx_http_chathistory_error_code_t  ngx_http_chathistory_error_codes[] = {
    { NGX_HTTP_BAD_REQUEST, "invalid_request" },
    { NGX_HTTP_UNAUTHORIZED, "unauthorized" },
    { NGX_HTTP_FORBIDDEN, "forbidden" },
    { NGX_HTTP_NOT_FOUND, "not_found" },
    { NGX_HTTP_NOT_ALLOWED, "method_not_allowed" },
    { NGX_HTTP_CONFLICT, "conflict" },
    { NGX_HTTP_PRECONDITION_FAILED, "precondition_failed" },
    { NGX_HTTP_REQUEST_ENTITY_TOO_LARGE, "payload_too_large" },
    { NGX_HTTP_UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type" },
    { 429, "rate_limited" },
    { NGX_HTTP_SERVICE_UNAVAILABLE, "unavailable" },
    { NGX_HTTP_GATEWAY_TIME_OUT, "unavailable" },
    { 0, "internal_error" }
};


const char  ngx_http_chathistory_json_nul[] = "\\u0000";
const char  ngx_http_chathistory_json_control[] = "a raw control character";


static ngx_str_t  ngx_http_chathistory_json_type =
    ngx_string("application/json");


/* Parse a body; the tree lives as long as the request. */
cJSON *
ngx_http_chathistory_json_parse(ngx_http_request_t *r, ngx_str_t *text)
{
    cJSON               *json;
    const char          *end;
    ngx_pool_cleanup_t  *cln;

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    json = cJSON_ParseWithLengthOpts((const char *) text->data, text->len,
                                     &end, 0);
    if (json == NULL) {
        return NULL;
    }

    cln->handler = ngx_http_chathistory_json_cleanup;
    cln->data = json;

    /* cJSON accepts trailing bytes after the value; we do not */
    while (end < (const char *) text->data + text->len) {
        if (*end != ' ' && *end != '\t' && *end != '\r' && *end != '\n') {
            return NULL;
        }
        end++;
    }

    return json;
}


static void
ngx_http_chathistory_json_cleanup(void *data)
{
    cJSON_Delete(data);
}


/*
 * cJSON takes raw control characters inside strings, which JSON forbids,
 * and \u0000, which ends a C string early and which PostgreSQL's text
 * cannot hold. Find either before parsing: NULL if there is none, else
 * what was found, and in *member the name of the member whose value holds
 * it (empty when it is in a name, or outside any object).
 */
const char *
ngx_http_chathistory_json_strings_check(ngx_str_t *text, ngx_str_t *member)
{
    u_char      *p, *last, *start, *end;
    const char  *found;

    p = text->data;
    last = p + text->len;
    member->len = 0;

    while (p < last) {

        if (*p++ != '"') {
            continue;
        }

        start = p;
        found = NULL;

        for ( /* void */ ; p < last && *p != '"'; p++) {

            if (*p < 0x20) {
                found = ngx_http_chathistory_json_control;
                break;
            }

            if (*p == '\\' && ++p < last && *p == 'u'
                && last - p >= 5 && ngx_strncmp(p + 1, "0000", 4) == 0)
            {
                found = ngx_http_chathistory_json_nul;
                break;
            }
        }

        end = ngx_http_chathistory_json_string_end(p, last);

        if (ngx_http_chathistory_json_is_name(end, last)) {
            if (found != NULL) {
                member->len = 0;
                return found;
            }

            member->data = start;
            member->len = end - start;

        } else if (found != NULL) {
            return found;
        }

        p = end + 1;
    }

    return NULL;
}


/* Where the string whose text p is in ends: its closing quote, or last. */
static u_char *
ngx_http_chathistory_json_string_end(u_char *p, u_char *last)
{
    while (p < last && *p != '"') {
        p += (*p == '\\') ? 2 : 1;
    }

    return ngx_min(p, last);
}


/* A string that ends at its quote "end" is a member's name: a colon follows. */
static ngx_uint_t
ngx_http_chathistory_json_is_name(u_char *end, u_char *last)
{
    u_char  *p;

    for (p = end + 1; p < last; p++) {
        if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n') {
            return *p == ':';
        }
    }

    return 0;
}


/* Quote a C string as a JSON string into the request pool. */
ngx_int_t
ngx_http_chathistory_json_string(ngx_http_request_t *r, ngx_str_t *out,
    const char *s)
{
    u_char  *p;
    size_t   len;

    len = 2;
    for (p = (u_char *) s; *p; p++) {
        len += (*p == '"' || *p == '\\') ? 2 : (*p < 0x20 ? 6 : 1);
    }

    out->data = ngx_pnalloc(r->pool, len);
    if (out->data == NULL) {
        return NGX_ERROR;
    }

    out->len = len;
    p = out->data;
    *p++ = '"';

    for ( /* void */ ; *s; s++) {
        if (*s == '"' || *s == '\\') {
            *p++ = '\\';
            *p++ = *s;

        } else if ((u_char) *s < 0x20) {
            p = ngx_sprintf(p, "\\u%04xd", (int) (u_char) *s);

        } else {
            *p++ = *s;
        }
    }

    *p = '"';

    return NGX_OK;
}


ngx_int_t
ngx_http_chathistory_send_json(ngx_http_request_t *r, ngx_uint_t status,
    ngx_chain_t *body)
{
    off_t         len;
    ngx_int_t     rc;
    ngx_chain_t  *cl;

    len = 0;
    for (cl = body; cl; cl = cl->next) {
        len += ngx_buf_size(cl->buf);
        if (cl->next == NULL) {
            cl->buf->last_buf = (r == r->main) ? 1 : 0;
            cl->buf->last_in_chain = 1;
        }
    }

    r->headers_out.status = status;
    r->headers_out.content_type = ngx_http_chathistory_json_type;
    r->headers_out.content_type_len = ngx_http_chathistory_json_type.len;
    r->headers_out.content_length_n = len;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    return ngx_http_output_filter(r, body);
}


/* Send a JSON text that may live only until this call returns. */
ngx_int_t
ngx_http_chathistory_send_text(ngx_http_request_t *r, ngx_uint_t status,
    const char *text, size_t len)
{
    ngx_buf_t    *b;
    ngx_chain_t   out;

    b = ngx_create_temp_buf(r->pool, len + 1);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_cpymem(b->pos, text, len);
    *b->last++ = '\n';

    out.buf = b;
    out.next = NULL;

    return ngx_http_chathistory_send_json(r, status, &out);
}


/*
 * {"error": {"code": ..., "message": ..., "request_id": ...}}; messages are
 * our own text, the request id is nginx's $request_id (hex), as in the
 * X-Request-Id header and the access log.
 */
ngx_int_t
ngx_http_chathistory_send_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *message)
{
    u_char      *p, *last;
    ngx_str_t    msg, id;
    const char  *code;

    if (ngx_http_chathistory_json_string(r, &msg, message) != NGX_OK
        || ngx_http_chathistory_request_id(r, &id) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    code = ngx_http_chathistory_error_code(status);

    p = ngx_pnalloc(r->pool, msg.len + ngx_strlen(code) + id.len + 96);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    last = ngx_sprintf(p, "{\"error\":{\"code\":\"%s\",\"message\":%V,"
                       "\"request_id\":\"%V\"}}", code, &msg, &id);

    /* an error answer replaces whatever the handler had set */
    r->headers_out.content_length_n = -1;
    if (r->headers_out.content_length) {
        r->headers_out.content_length->hash = 0;
        r->headers_out.content_length = NULL;
    }

    return ngx_http_chathistory_send_text(r, status, (char *) p, last - p);
}


static const char *
ngx_http_chathistory_error_code(ngx_uint_t status)
{
    ngx_http_chathistory_error_code_t  *e;

    for (e = ngx_http_chathistory_error_codes; e->status; e++) {
        if (e->status == status) {
            return e->code;
        }
    }

    return e->code;
}


/*
 * The request's id: nginx's $request_id, through the index taken at
 * configuration, so that it is made once and is the same everywhere.
 */
ngx_int_t
ngx_http_chathistory_request_id(ngx_http_request_t *r, ngx_str_t *id)
{
    ngx_http_variable_value_t         *v;
    ngx_http_chathistory_main_conf_t  *cmcf;

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_chathistory_module);

    v = ngx_http_get_indexed_variable(r->main, cmcf->request_id_index);

    if (v == NULL || v->not_found) {
        return NGX_ERROR;
    }

    id->data = v->data;
    id->len = v->len;

    return NGX_OK;
}


/* 304: the representation the client has; its ETag is set already. */
ngx_int_t
ngx_http_chathistory_send_not_modified(ngx_http_request_t *r)
{
    ngx_int_t  rc;

    r->headers_out.status = NGX_HTTP_NOT_MODIFIED;
    r->headers_out.content_length_n = -1;
    r->header_only = 1;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK) {
        return rc;
    }

    return ngx_http_send_special(r, NGX_HTTP_LAST);
}


ngx_int_t
ngx_http_chathistory_send_no_content(ngx_http_request_t *r)
{
    ngx_int_t  rc;

    r->headers_out.status = NGX_HTTP_NO_CONTENT;
    r->headers_out.content_length_n = 0;
    r->header_only = 1;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK) {
        return rc;
    }

    return ngx_http_send_special(r, NGX_HTTP_LAST);
}
