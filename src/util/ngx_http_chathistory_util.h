
/*
 * The module's utilities, at the bottom: no other part of it below them.
 */


#ifndef _NGX_HTTP_CHATHISTORY_UTIL_H_INCLUDED_
#define _NGX_HTTP_CHATHISTORY_UTIL_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>


/* a timer event of the module's own, not of a connection */
void ngx_http_chathistory_timer_init(ngx_event_t *ev,
    ngx_event_handler_pt handler, ngx_log_t *log, ngx_uint_t cancelable);

/* a NUL-terminated copy in the pool */
char *ngx_http_chathistory_strdup(ngx_pool_t *pool, const char *s);

/* the module worked: hand the memory it freed back to the system soon */
void ngx_http_chathistory_memory_used(void);


#endif /* _NGX_HTTP_CHATHISTORY_UTIL_H_INCLUDED_ */
