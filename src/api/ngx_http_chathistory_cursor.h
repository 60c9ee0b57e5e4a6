
/*
 * Opaque keyset cursors for paginated lists.
 */


#ifndef _NGX_HTTP_CHATHISTORY_CURSOR_H_INCLUDED_
#define _NGX_HTTP_CHATHISTORY_CURSOR_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_chathistory_uuid.h"


/* the position of a row: its time in microseconds and its id */
typedef struct {
    char                         micros[NGX_INT64_LEN + 1];
    ngx_http_chathistory_uuid_t  id;
} ngx_http_chathistory_cursor_t;


ngx_int_t ngx_http_chathistory_cursor_encode(ngx_pool_t *pool,
    const char *micros, const char *id, ngx_str_t *out);
ngx_int_t ngx_http_chathistory_cursor_decode(ngx_str_t *in,
    ngx_http_chathistory_cursor_t *cursor);


#endif /* _NGX_HTTP_CHATHISTORY_CURSOR_H_INCLUDED_ */
