
/*
 * Counters and gauges of the whole nginx, in a shared memory zone so that
 * any worker can answer for all: every part counts here, the
 * chathistory_status handler reads.
 */


#ifndef _NGX_HTTP_CHATHISTORY_COUNTERS_H_INCLUDED_
#define _NGX_HTTP_CHATHISTORY_COUNTERS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


#define NGX_HTTP_CHATHISTORY_COUNTED_ROUTES   16    /* 0: no route */
#define NGX_HTTP_CHATHISTORY_COUNTED_WORKERS  256
#define NGX_HTTP_CHATHISTORY_COUNTED_CODES    28    /* the last: others */


/* what is counted; the names and labels are in the status handler */
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


/* one worker process's pool, as it is now */
typedef struct {
    ngx_pid_t                 pid;
    ngx_atomic_t              connections;
    ngx_atomic_t              busy;
    ngx_atomic_t              waiting;
} ngx_http_chathistory_counted_worker_t;


typedef struct {
    ngx_atomic_t              counters[CH_STAT_COUNT];
    ngx_atomic_t              requests[NGX_HTTP_CHATHISTORY_COUNTED_ROUTES]
                                      [NGX_HTTP_CHATHISTORY_COUNTED_CODES];
    ngx_atomic_t              spool_messages;
    ngx_atomic_t              spool_seen;
    ngx_http_chathistory_counted_worker_t
                              workers[NGX_HTTP_CHATHISTORY_COUNTED_WORKERS];
} ngx_http_chathistory_counted_t;


/* the zone, wherever there is something to count or to show */
ngx_int_t ngx_http_chathistory_counters_zone(ngx_conf_t *cf,
    ngx_uint_t needed);
ngx_int_t ngx_http_chathistory_counters_init_process(ngx_cycle_t *cycle);
void ngx_http_chathistory_counters_exit_process(ngx_cycle_t *cycle);

void ngx_http_chathistory_count(ngx_http_chathistory_stat_e what);
void ngx_http_chathistory_count_request(ngx_uint_t route, ngx_uint_t status);
void ngx_http_chathistory_count_pool(ngx_uint_t connections, ngx_uint_t idle,
    ngx_uint_t waiting);
void ngx_http_chathistory_count_spool(ngx_uint_t messages);

/* what was counted, NULL when nothing is; and the status codes counted */
ngx_http_chathistory_counted_t *ngx_http_chathistory_counted(void);
ngx_uint_t ngx_http_chathistory_counted_code(ngx_uint_t i);


#endif /* _NGX_HTTP_CHATHISTORY_COUNTERS_H_INCLUDED_ */
