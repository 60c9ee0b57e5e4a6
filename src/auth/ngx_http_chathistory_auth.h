
/*
 * API keys: the organization a request was let through for.
 */


#ifndef _NGX_HTTP_CHATHISTORY_AUTH_H_INCLUDED_
#define _NGX_HTTP_CHATHISTORY_AUTH_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


/* the key's organization as NUL-terminated UUID text, or NULL */
const char *ngx_http_chathistory_auth_org(ngx_http_request_t *r);

/* the API key a request carries, or NGX_DECLINED and why */
ngx_int_t ngx_http_chathistory_auth_key(ngx_http_request_t *r, ngx_str_t *key,
    const char **error, ngx_uint_t *invalid_token);


extern ngx_module_t  ngx_http_chathistory_auth_module;


#endif /* _NGX_HTTP_CHATHISTORY_AUTH_H_INCLUDED_ */
