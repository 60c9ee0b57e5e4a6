
/*
 * Counters and gauges for "chathistory_status;": kept in a shared memory
 * zone so that any worker answers for all of them, printed in
 * Prometheus's text format.
 */


#ifndef _NGX_HTTP_CHATHISTORY_STATUS_H_INCLUDED_
#define _NGX_HTTP_CHATHISTORY_STATUS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_chathistory_pg.h"


/* what is counted; the names and labels are in the status module */
typedef enum {
    CH_STAT_CAPTURE_RECORDED = 0,
    CH_STAT_CAPTURE_NOT_UUID,
    CH_STAT_CAPTURE_UNKNOWN_SESSION,
    CH_STAT_CAPTURE_UPSTREAM_STATUS,
    CH_STAT_CAPTURE_NO_BODY,
    CH_STAT_CAPTURE_ENCODED,
    CH_STAT_CAPTURE_TOO_LARGE,
    CH_STAT_CAPTURE_NOT_JSON,
    CH_STAT_CAPTURE_MALFORMED,
    CH_STAT_CAPTURE_LOOKUP_TIMEOUT,

    CH_STAT_MESSAGE_STORED,
    CH_STAT_MESSAGE_SPOOLED,
    CH_STAT_MESSAGE_REPLAYED,
    CH_STAT_MESSAGE_SESSION_GONE,
    CH_STAT_MESSAGE_REJECTED,
    CH_STAT_MESSAGE_LOST,
    CH_STAT_MESSAGE_BATCHES,

    CH_STAT_AUDIO_STORED,
    CH_STAT_AUDIO_SKIPPED,

    CH_STAT_DB_OK,
    CH_STAT_DB_ERROR,
    CH_STAT_DB_UNREACHABLE,
    CH_STAT_DB_BUSY,
    CH_STAT_DB_TIMEOUT,
    CH_STAT_DB_WAITS,
    CH_STAT_DB_CONNECTS,
    CH_STAT_DB_CONNECT_FAILURES,

    CH_STAT_COUNT
} ngx_http_chathistory_stat_e;


/* the zone, wherever there is something to count or to show */
ngx_int_t ngx_http_chathistory_status_zone(ngx_conf_t *cf);
ngx_int_t ngx_http_chathistory_status_init_process(ngx_cycle_t *cycle);
void ngx_http_chathistory_status_exit_process(ngx_cycle_t *cycle);

void ngx_http_chathistory_status_count(ngx_http_chathistory_stat_e what);
void ngx_http_chathistory_status_pool(ngx_http_chathistory_pg_pool_t *pool);
void ngx_http_chathistory_status_spool(ngx_uint_t messages);

/* the location's handler, set by the "chathistory_status" directive */
char *ngx_http_chathistory_status(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


#endif /* _NGX_HTTP_CHATHISTORY_STATUS_H_INCLUDED_ */
