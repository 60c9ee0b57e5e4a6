
/*
 * "chathistory_status;": what the counters hold, in Prometheus's text
 * format.
 */


#ifndef _NGX_HTTP_CHATHISTORY_STATUS_H_INCLUDED_
#define _NGX_HTTP_CHATHISTORY_STATUS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>



/* the location's handler, set by the "chathistory_status" directive */
char *ngx_http_chathistory_status(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


#endif /* _NGX_HTTP_CHATHISTORY_STATUS_H_INCLUDED_ */
