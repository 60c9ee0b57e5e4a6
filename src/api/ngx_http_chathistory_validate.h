
/*
 * Checks of what clients send: language tags, text, query arguments.
 */


#ifndef _NGX_HTTP_CHATHISTORY_VALIDATE_H_INCLUDED_
#define _NGX_HTTP_CHATHISTORY_VALIDATE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


#define NGX_HTTP_CHATHISTORY_LANG_MAX   35
#define NGX_HTTP_CHATHISTORY_TITLE_MAX  500
#define NGX_HTTP_CHATHISTORY_USER_ID_MAX   200     /* characters */
#define NGX_HTTP_CHATHISTORY_METADATA_MAX  8192    /* bytes, serialized */


ngx_int_t ngx_http_chathistory_lang_tag(ngx_pool_t *pool, const char *in,
    char **out);
ngx_int_t ngx_http_chathistory_text_valid(const char *s, size_t max);
ngx_int_t ngx_http_chathistory_user_id_valid(u_char *p, size_t len,
    size_t max);
ngx_int_t ngx_http_chathistory_arg(ngx_http_request_t *r, const char *name,
    ngx_str_t *value);
const char *ngx_http_chathistory_rfc3339(const char *s, int64_t *micros);
ngx_int_t ngx_http_chathistory_arg_limit(ngx_http_request_t *r,
    ngx_uint_t dflt, ngx_uint_t max, ngx_uint_t *limit);


#endif /* _NGX_HTTP_CHATHISTORY_VALIDATE_H_INCLUDED_ */
