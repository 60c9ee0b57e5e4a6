
/*
 * UUIDs: version 7 for new rows, and validation of ids from clients.
 */


#ifndef _NGX_HTTP_CHATHISTORY_UUID_H_INCLUDED_
#define _NGX_HTTP_CHATHISTORY_UUID_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


#define NGX_HTTP_CHATHISTORY_UUID_LEN  36


/* a NUL-terminated canonical UUID, ready to be a query parameter */
typedef struct {
    u_char  text[NGX_HTTP_CHATHISTORY_UUID_LEN + 1];
} ngx_http_chathistory_uuid_t;


void ngx_http_chathistory_uuid_v7(ngx_http_chathistory_uuid_t *id);
ngx_int_t ngx_http_chathistory_uuid_parse(ngx_http_chathistory_uuid_t *id,
    u_char *s, size_t len);


#endif /* _NGX_HTTP_CHATHISTORY_UUID_H_INCLUDED_ */
