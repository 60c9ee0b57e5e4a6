
/*
 * Asynchronous PostgreSQL on the nginx event loop: one pool of libpq
 * connections per worker process, and the queries that wait for them.
 */


#ifndef _NGX_HTTP_CHATHISTORY_PG_H_INCLUDED_
#define _NGX_HTTP_CHATHISTORY_PG_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <libpq-fe.h>

#include "ngx_http_chathistory_module.h"


#define CH_PG_MAX_PARAMS  16


typedef struct ngx_http_chathistory_pg_query_s  ngx_http_chathistory_pg_query_t;
typedef struct ngx_http_chathistory_pg_conn_s   ngx_http_chathistory_pg_conn_t;
typedef struct ngx_http_chathistory_pg_pool_s   ngx_http_chathistory_pg_pool_t;

/*
 * Called once per query: with the result (owned by the caller, cleared
 * after the handler returns), or with NULL and q->failure set when the
 * database could not be reached in time.
 */
typedef void (*ngx_http_chathistory_pg_handler_pt)(
    ngx_http_chathistory_pg_query_t *q, PGresult *res);


typedef enum {
    NGX_HTTP_CHATHISTORY_PG_OK = 0,
    NGX_HTTP_CHATHISTORY_PG_UNREACHABLE,
    NGX_HTTP_CHATHISTORY_PG_BUSY,
    NGX_HTTP_CHATHISTORY_PG_TIMEOUT
} ngx_http_chathistory_pg_failure_e;


struct ngx_http_chathistory_pg_query_s {
    ngx_http_request_t                  *request;   /* NULL when detached */
    ngx_log_t                           *log;
    ngx_uint_t                           stmt;
    int                                  nparams;
    const char                          *values[CH_PG_MAX_PARAMS];

    ngx_http_chathistory_pg_handler_pt   handler;
    void                                *data;

    ngx_http_chathistory_pg_pool_t      *pool;      /* where it runs */
    ngx_http_chathistory_pg_conn_t      *conn;
    ngx_queue_t                          queue;     /* in pool->waiting */
    ngx_event_t                          wait_timer;
    ngx_http_chathistory_pg_failure_e    failure;

    unsigned                             waiting:1;
    unsigned                             done:1;
    /* a batch of recorded messages: it runs on the pool's writer */
    unsigned                             writer:1;
    /* a read that a replica may answer, when one is usable */
    unsigned                             replica:1;
    /* the replica's lag check: on the replica, usable or not */
    unsigned                             probe:1;
    /* the replica failed it: the primary answers */
    unsigned                             retried:1;
};


typedef enum {
    NGX_HTTP_CHATHISTORY_PG_CONNECTING = 0,
    NGX_HTTP_CHATHISTORY_PG_IDLE,
    NGX_HTTP_CHATHISTORY_PG_PREPARING,
    NGX_HTTP_CHATHISTORY_PG_EXECUTING
} ngx_http_chathistory_pg_state_e;


struct ngx_http_chathistory_pg_conn_s {
    ngx_queue_t                          queue;     /* in pool->idle/busy */
    ngx_http_chathistory_pg_pool_t      *pool;
    PGconn                              *pgconn;
    ngx_connection_t                    *connection;
    ngx_file_uniq_t                      socket_id;  /* the fd's inode */
    ngx_http_chathistory_pg_state_e      state;

    ngx_http_chathistory_pg_query_t     *query;     /* NULL when abandoned */
    ngx_uint_t                           stmt;
    PGresult                            *result;
    uint64_t                             prepared;  /* statement bitmap */
    ngx_uint_t                           generation;

    unsigned                             reprepared:1;
    unsigned                             idle:1;
};


struct ngx_http_chathistory_pg_pool_s {
    ngx_http_chathistory_main_conf_t    *conf;
    ngx_http_chathistory_db_t           *db;
    ngx_log_t                           *log;

    ngx_queue_t                          idle;
    ngx_queue_t                          busy;
    ngx_queue_t                          waiting;
    ngx_queue_t                          writer_waiting;
    ngx_http_chathistory_pg_conn_t      *writer;
    ngx_uint_t                           nconns;
    ngx_uint_t                           nidle;
    ngx_uint_t                           nwaiting;

    ngx_msec_t                           backoff;
    ngx_msec_t                           retry_at;

    /* bumped when the server turned read-only: older connections go */
    ngx_uint_t                           generation;

    unsigned                             replica:1;
    /* the replica answered its last lag check within the bound */
    unsigned                             usable:1;
};


/* the pool */
ngx_int_t ngx_http_chathistory_pg_pool_init(ngx_cycle_t *cycle,
    ngx_http_chathistory_main_conf_t *cmcf);
void ngx_http_chathistory_pg_pool_done(ngx_cycle_t *cycle);
/* the replica's pool, NULL without chathistory_database_replica_url */
ngx_http_chathistory_pg_pool_t *ngx_http_chathistory_pg_replica_pool(void);
void ngx_http_chathistory_pg_pool_readonly(ngx_http_chathistory_pg_pool_t *pool);
ngx_http_chathistory_pg_query_t *ngx_http_chathistory_pg_query_create(
    ngx_http_request_t *r, ngx_uint_t stmt,
    ngx_http_chathistory_pg_handler_pt handler, void *data);
ngx_http_chathistory_pg_query_t *ngx_http_chathistory_pg_query_alloc(
    ngx_pool_t *pool, ngx_log_t *log, ngx_uint_t stmt,
    ngx_http_chathistory_pg_handler_pt handler, void *data);
void ngx_http_chathistory_pg_query_run(ngx_http_chathistory_pg_query_t *q);
void ngx_http_chathistory_pg_query_fail(ngx_http_chathistory_pg_query_t *q,
    ngx_http_chathistory_pg_failure_e failure);
void ngx_http_chathistory_pg_pool_connected(
    ngx_http_chathistory_pg_conn_t *pc);
void ngx_http_chathistory_pg_pool_released(
    ngx_http_chathistory_pg_conn_t *pc);
void ngx_http_chathistory_pg_pool_expired(ngx_http_chathistory_pg_conn_t *pc);
void ngx_http_chathistory_pg_pool_failed(ngx_http_chathistory_pg_conn_t *pc,
    ngx_uint_t connected);

/* one connection */
ngx_http_chathistory_pg_conn_t *ngx_http_chathistory_pg_conn_open(
    ngx_http_chathistory_pg_pool_t *pool);
void ngx_http_chathistory_pg_conn_send(ngx_http_chathistory_pg_conn_t *pc,
    ngx_http_chathistory_pg_query_t *q);
void ngx_http_chathistory_pg_conn_close(ngx_http_chathistory_pg_conn_t *pc);
void ngx_http_chathistory_pg_query_finish(ngx_http_chathistory_pg_query_t *q,
    PGresult *res, ngx_http_chathistory_pg_failure_e failure);

/* the first line of the connection's last error */
ngx_str_t *ngx_http_chathistory_pg_error(PGconn *conn, ngx_str_t *msg);

/* the replica's lag check (ngx_http_chathistory_pg_replica.c) */
ngx_int_t ngx_http_chathistory_pg_replica_init(ngx_cycle_t *cycle);
void ngx_http_chathistory_pg_replica_done(void);

/* SQLSTATE of a failed result, or "" */
const char *ngx_http_chathistory_pg_sqlstate(PGresult *res);


#endif /* _NGX_HTTP_CHATHISTORY_PG_H_INCLUDED_ */
