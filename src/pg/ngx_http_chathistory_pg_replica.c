
/*
 * The read replica's lag check: once a second each worker process asks
 * the replica how far behind it is, on the replica's own pool, and the
 * replica serves reads only while the answer is within
 * chathistory_database_replica_max_lag. Never blocking: the check is a
 * query like any other, and no answer counts as too far behind.
 */


#include "ngx_http_chathistory_pg.h"
#include "ngx_http_chathistory_statements.h"


#define CH_REPLICA_CHECK_INTERVAL  1000


static void ngx_http_chathistory_pg_replica_check(ngx_event_t *ev);
static void ngx_http_chathistory_pg_replica_checked(
    ngx_http_chathistory_pg_query_t *q, PGresult *res);
static void ngx_http_chathistory_pg_replica_usable(
    ngx_http_chathistory_pg_pool_t *pool, ngx_uint_t usable,
    const char *why, ngx_int_t lag);


static ngx_event_t       ngx_http_chathistory_pg_replica_timer;
/* the debug log names a timer by its data's fd */
static ngx_connection_t  ngx_http_chathistory_pg_replica_dummy;
/* the pool of the check in flight, NULL when none is */
static ngx_pool_t       *ngx_http_chathistory_pg_replica_checking;


ngx_int_t
ngx_http_chathistory_pg_replica_init(ngx_cycle_t *cycle)
{
    ngx_event_t  *ev;

    if (ngx_http_chathistory_pg_replica_pool() == NULL) {
        return NGX_OK;
    }

    ev = &ngx_http_chathistory_pg_replica_timer;

    ev->handler = ngx_http_chathistory_pg_replica_check;
    ev->log = cycle->log;
    ngx_http_chathistory_pg_replica_dummy.fd = (ngx_socket_t) -1;
    ev->data = &ngx_http_chathistory_pg_replica_dummy;
    /* a quitting worker does not wait for the next check */
    ev->cancelable = 1;

    /* the replica serves once it has passed a check: soon after start */
    ngx_add_timer(ev, 1);

    return NGX_OK;
}


void
ngx_http_chathistory_pg_replica_done(void)
{
    if (ngx_http_chathistory_pg_replica_timer.timer_set) {
        ngx_del_timer(&ngx_http_chathistory_pg_replica_timer);
    }
}


static void
ngx_http_chathistory_pg_replica_check(ngx_event_t *ev)
{
    ngx_pool_t                       *pool;
    ngx_http_chathistory_pg_query_t  *q;

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    /* the check's answer comes before the next one is due, or fails */
    ngx_add_timer(ev, CH_REPLICA_CHECK_INTERVAL);

    if (ngx_http_chathistory_pg_replica_checking != NULL) {
        /* the last check has not come back yet: still waiting */
        return;
    }

    pool = ngx_create_pool(1024, ev->log);
    if (pool == NULL) {
        return;
    }

    q = ngx_http_chathistory_pg_query_alloc(pool, ev->log,
                                        NGX_HTTP_CHATHISTORY_SQL_REPLICA_LAG,
                                        ngx_http_chathistory_pg_replica_checked,
                                        pool);
    if (q == NULL) {
        ngx_destroy_pool(pool);
        return;
    }

    q->probe = 1;
    ngx_http_chathistory_pg_replica_checking = pool;

    ngx_http_chathistory_pg_query_run(q);
}


static void
ngx_http_chathistory_pg_replica_checked(ngx_http_chathistory_pg_query_t *q,
    PGresult *res)
{
    ngx_int_t                        lag;
    ngx_pool_t                      *pool;
    ngx_http_chathistory_pg_pool_t  *replica;

    pool = q->data;
    replica = q->pool;

    ngx_http_chathistory_pg_replica_checking = NULL;

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK
        || PQntuples(res) != 1 || PQgetisnull(res, 0, 0))
    {
        ngx_http_chathistory_pg_replica_usable(replica, 0,
                                               "does not answer", 0);
        ngx_destroy_pool(pool);
        return;
    }

    lag = ngx_atoi((u_char *) PQgetvalue(res, 0, 0), PQgetlength(res, 0, 0));

    if (lag == NGX_ERROR || (ngx_msec_t) lag > replica->conf->replica_max_lag)
    {
        ngx_http_chathistory_pg_replica_usable(replica, 0, "lags", lag);

    } else {
        ngx_http_chathistory_pg_replica_usable(replica, 1, NULL, lag);
    }

    ngx_destroy_pool(pool);
}


/* Log the changes only: a lagging replica says so once, not every second. */
static void
ngx_http_chathistory_pg_replica_usable(ngx_http_chathistory_pg_pool_t *pool,
    ngx_uint_t usable, const char *why, ngx_int_t lag)
{
    if (pool == NULL || pool->usable == usable) {
        return;
    }

    pool->usable = usable;

    if (usable) {
        ngx_log_error(NGX_LOG_NOTICE, pool->log, 0,
                      "chathistory: the replica at \"%V\" serves reads "
                      "(%i ms behind)", &pool->db->target, lag);
        return;
    }

    ngx_log_error(NGX_LOG_WARN, pool->log, 0,
                  "chathistory: the replica at \"%V\" %s (%i ms behind): "
                  "the primary serves its reads", &pool->db->target, why, lag);
}
