
/*
 * The headers of every API answer (X-Request-Id, CORS) and the CORS
 * preflight.
 */


#ifndef _NGX_HTTP_CHATHISTORY_CORS_H_INCLUDED_
#define _NGX_HTTP_CHATHISTORY_CORS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_chathistory_module.h"


/* the header filter, chained at postconfiguration */
ngx_int_t ngx_http_chathistory_cors_init(ngx_conf_t *cf);

/* whether the request is a CORS preflight that this location answers */
ngx_uint_t ngx_http_chathistory_cors_preflight(ngx_http_request_t *r);

/* answer a preflight for a resource with these methods */
ngx_int_t ngx_http_chathistory_cors_answer(ngx_http_request_t *r,
    const char *allow);

/* the chathistory_cors_origin directive */
char *ngx_http_chathistory_cors_origin(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


#endif /* _NGX_HTTP_CHATHISTORY_CORS_H_INCLUDED_ */
