
/*
 * The worker process's pool of PostgreSQL connections, and the bounded
 * queue of queries that wait for one.
 *
 * Batches of recorded messages, statements of up to about 64 KB, run on
 * one connection of the pool, its writer; other statements take the
 * writer last. libpq keeps a connection's buffers at the size of the
 * largest statement it sent: this way one connection's grow to a batch's
 * size, not every connection's in turn.
 */


#include "ngx_http_chathistory_pg.h"
#include "ngx_http_chathistory_counters.h"


#define CH_PG_BACKOFF_MIN  50
#define CH_PG_BACKOFF_MAX  1000


static void ngx_http_chathistory_pg_query_cleanup(void *data);
static void ngx_http_chathistory_pg_wait_timeout(ngx_event_t *ev);
static void ngx_http_chathistory_pg_failed_handler(ngx_event_t *ev);
static void ngx_http_chathistory_pg_enqueue(
    ngx_http_chathistory_pg_query_t *q);
static void ngx_http_chathistory_pg_pool_counted(
    ngx_http_chathistory_pg_pool_t *pool);
static void ngx_http_chathistory_pg_dequeue(
    ngx_http_chathistory_pg_query_t *q);
static ngx_int_t ngx_http_chathistory_pg_grow(
    ngx_http_chathistory_pg_pool_t *pool);
static void ngx_http_chathistory_pg_take(ngx_http_chathistory_pg_pool_t *pool,
    ngx_http_chathistory_pg_conn_t *pc, ngx_http_chathistory_pg_query_t *q);
static ngx_http_chathistory_pg_conn_t *ngx_http_chathistory_pg_pick(
    ngx_http_chathistory_pg_pool_t *pool, ngx_http_chathistory_pg_query_t *q);
static ngx_http_chathistory_pg_query_t *ngx_http_chathistory_pg_waiter(
    ngx_http_chathistory_pg_pool_t *pool, ngx_http_chathistory_pg_conn_t *pc);
static void ngx_http_chathistory_pg_writer_lost(
    ngx_http_chathistory_pg_pool_t *pool);
static void ngx_http_chathistory_pg_count(
    ngx_http_chathistory_pg_failure_e failure, PGresult *res);
static void ngx_http_chathistory_pg_fail_waiting(
    ngx_http_chathistory_pg_pool_t *pool);
static ngx_http_chathistory_pg_pool_t *ngx_http_chathistory_pg_pool_create(
    ngx_cycle_t *cycle, ngx_http_chathistory_main_conf_t *cmcf,
    ngx_http_chathistory_db_t *db);
static void ngx_http_chathistory_pg_pool_close(
    ngx_http_chathistory_pg_pool_t *pool);
static ngx_http_chathistory_pg_pool_t *ngx_http_chathistory_pg_route(
    ngx_http_chathistory_pg_query_t *q);
static ngx_uint_t ngx_http_chathistory_pg_fall_back(
    ngx_http_chathistory_pg_query_t *q, PGresult *res,
    ngx_http_chathistory_pg_failure_e failure);


static ngx_http_chathistory_pg_pool_t  *ngx_http_chathistory_pg_pool;
static ngx_http_chathistory_pg_pool_t  *ngx_http_chathistory_pg_replica;


ngx_int_t
ngx_http_chathistory_pg_pool_init(ngx_cycle_t *cycle,
    ngx_http_chathistory_main_conf_t *cmcf)
{
    ngx_http_chathistory_pg_pool = ngx_http_chathistory_pg_pool_create(cycle,
                                                              cmcf, &cmcf->db);
    if (ngx_http_chathistory_pg_pool == NULL) {
        return NGX_ERROR;
    }

    if (cmcf->replica_url.len == 0) {
        return NGX_OK;
    }

    /* a pool of its own: what the replica does never touches the primary's */
    ngx_http_chathistory_pg_replica = ngx_http_chathistory_pg_pool_create(
                                               cycle, cmcf, &cmcf->replica);
    if (ngx_http_chathistory_pg_replica == NULL) {
        return NGX_ERROR;
    }

    ngx_http_chathistory_pg_replica->replica = 1;

    return NGX_OK;
}


static ngx_http_chathistory_pg_pool_t *
ngx_http_chathistory_pg_pool_create(ngx_cycle_t *cycle,
    ngx_http_chathistory_main_conf_t *cmcf, ngx_http_chathistory_db_t *db)
{
    ngx_http_chathistory_pg_pool_t  *pool;

    pool = ngx_pcalloc(cycle->pool, sizeof(ngx_http_chathistory_pg_pool_t));
    if (pool == NULL) {
        return NULL;
    }

    pool->conf = cmcf;
    pool->db = db;
    pool->log = cycle->log;

    ngx_queue_init(&pool->idle);
    ngx_queue_init(&pool->busy);
    ngx_queue_init(&pool->waiting);
    ngx_queue_init(&pool->writer_waiting);

    return pool;
}


ngx_http_chathistory_pg_pool_t *
ngx_http_chathistory_pg_replica_pool(void)
{
    return ngx_http_chathistory_pg_replica;
}


void
ngx_http_chathistory_pg_pool_done(ngx_cycle_t *cycle)
{
    ngx_http_chathistory_pg_pool_close(ngx_http_chathistory_pg_pool);
    ngx_http_chathistory_pg_pool_close(ngx_http_chathistory_pg_replica);

    ngx_http_chathistory_pg_pool = NULL;
    ngx_http_chathistory_pg_replica = NULL;
}


static void
ngx_http_chathistory_pg_pool_close(ngx_http_chathistory_pg_pool_t *pool)
{
    ngx_queue_t                     *qu;
    ngx_http_chathistory_pg_conn_t  *pc;

    if (pool == NULL) {
        return;
    }

    while (!ngx_queue_empty(&pool->idle)) {
        qu = ngx_queue_head(&pool->idle);
        ngx_queue_remove(qu);
        pc = ngx_queue_data(qu, ngx_http_chathistory_pg_conn_t, queue);
        ngx_http_chathistory_pg_conn_close(pc);
    }

    while (!ngx_queue_empty(&pool->busy)) {
        qu = ngx_queue_head(&pool->busy);
        ngx_queue_remove(qu);
        pc = ngx_queue_data(qu, ngx_http_chathistory_pg_conn_t, queue);
        ngx_http_chathistory_pg_conn_close(pc);
    }
}


ngx_http_chathistory_pg_query_t *
ngx_http_chathistory_pg_query_create(ngx_http_request_t *r, ngx_uint_t stmt,
    ngx_http_chathistory_pg_handler_pt handler, void *data)
{
    ngx_http_chathistory_pg_query_t  *q;

    q = ngx_http_chathistory_pg_query_alloc(r->pool, r->connection->log, stmt,
                                            handler, data);
    if (q == NULL) {
        return NULL;
    }

    q->request = r;

    return q;
}


/* A query of its own pool, not a request's: it outlives any client. */
ngx_http_chathistory_pg_query_t *
ngx_http_chathistory_pg_query_alloc(ngx_pool_t *pool, ngx_log_t *log,
    ngx_uint_t stmt, ngx_http_chathistory_pg_handler_pt handler, void *data)
{
    ngx_pool_cleanup_t               *cln;
    ngx_http_chathistory_pg_query_t  *q;

    q = ngx_pcalloc(pool, sizeof(ngx_http_chathistory_pg_query_t));
    if (q == NULL) {
        return NULL;
    }

    cln = ngx_pool_cleanup_add(pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    cln->handler = ngx_http_chathistory_pg_query_cleanup;
    cln->data = q;

    q->log = log;
    q->stmt = stmt;
    q->handler = handler;
    q->data = data;

    q->wait_timer.handler = ngx_http_chathistory_pg_wait_timeout;
    q->wait_timer.data = q;
    q->wait_timer.log = log;

    return q;
}


/* Run the query on an idle connection, a new one, or after a wait. */
void
ngx_http_chathistory_pg_query_run(ngx_http_chathistory_pg_query_t *q)
{
    ngx_http_chathistory_pg_conn_t  *pc;
    ngx_http_chathistory_pg_pool_t  *pool;

    pool = ngx_http_chathistory_pg_route(q);
    q->pool = pool;

    if (pool == NULL) {
        ngx_http_chathistory_pg_query_fail(q,
                                          NGX_HTTP_CHATHISTORY_PG_UNREACHABLE);
        return;
    }

    pc = ngx_http_chathistory_pg_pick(pool, q);

    if (pc != NULL) {
        ngx_http_chathistory_pg_take(pool, pc, q);
        return;
    }

    if (pool->nwaiting >= pool->conf->queue_size) {
        ngx_log_error(NGX_LOG_WARN, q->log, 0,
                      "chathistory: all %ui PostgreSQL connections busy "
                      "and %ui requests waiting",
                      pool->nconns, pool->nwaiting);
        ngx_http_chathistory_pg_query_fail(q,
                                          NGX_HTTP_CHATHISTORY_PG_BUSY);
        return;
    }

    /* a batch waits for the writer, if there is one: no new connection */
    if ((!q->writer || pool->writer == NULL)
        && pool->nconns < pool->conf->pool_size
        && ngx_http_chathistory_pg_grow(pool) != NGX_OK)
    {
        if (pool->nconns == 0) {
            ngx_http_chathistory_pg_query_fail(q,
                                          NGX_HTTP_CHATHISTORY_PG_UNREACHABLE);
            return;
        }
    }

    ngx_http_chathistory_pg_enqueue(q);
}


/*
 * The replica takes a read that may go there while its last lag check
 * found it within chathistory_database_replica_max_lag; the primary takes
 * everything else.
 */
static ngx_http_chathistory_pg_pool_t *
ngx_http_chathistory_pg_route(ngx_http_chathistory_pg_query_t *q)
{
    ngx_http_chathistory_pg_pool_t  *replica;

    replica = ngx_http_chathistory_pg_replica;

    if (q->probe) {
        return replica;
    }

    if (q->replica && !q->retried && replica != NULL && replica->usable) {
        return replica;
    }

    return ngx_http_chathistory_pg_pool;
}


/*
 * The server a pool writes to turned read-only (a primary demoted, or
 * told default_transaction_read_only): every connection made before goes,
 * the idle ones now, the busy ones when they are done; new ones find the
 * writable host (target_session_attrs=read-write).
 */
void
ngx_http_chathistory_pg_pool_readonly(ngx_http_chathistory_pg_pool_t *pool)
{
    ngx_queue_t                     *qu;
    ngx_http_chathistory_pg_conn_t  *pc;

    ngx_log_error(NGX_LOG_WARN, pool->log, 0,
                  "chathistory: PostgreSQL at \"%V\" is read-only: "
                  "connecting again, to the writable host",
                  &pool->db->target);

    pool->generation++;

    while (!ngx_queue_empty(&pool->idle)) {
        qu = ngx_queue_head(&pool->idle);
        pc = ngx_queue_data(qu, ngx_http_chathistory_pg_conn_t, queue);
        ngx_http_chathistory_pg_pool_expired(pc);
    }

    if (pool->nwaiting && pool->nconns < pool->conf->pool_size) {
        (void) ngx_http_chathistory_pg_grow(pool);
    }
}


/* An idle connection goes to work. */
static void
ngx_http_chathistory_pg_take(ngx_http_chathistory_pg_pool_t *pool,
    ngx_http_chathistory_pg_conn_t *pc, ngx_http_chathistory_pg_query_t *q)
{
    ngx_queue_remove(&pc->queue);
    ngx_queue_insert_tail(&pool->busy, &pc->queue);
    pc->idle = 0;
    pool->nidle--;

    if (q->writer) {
        pool->writer = pc;
    }

    ngx_http_chathistory_pg_pool_counted(pool);
    ngx_http_chathistory_pg_conn_send(pc, q);
}


/*
 * An idle connection for the query: a batch takes the writer (the first
 * batch makes one), any other statement the most recently used connection
 * but the writer, or the writer if no other is idle.
 */
static ngx_http_chathistory_pg_conn_t *
ngx_http_chathistory_pg_pick(ngx_http_chathistory_pg_pool_t *pool,
    ngx_http_chathistory_pg_query_t *q)
{
    ngx_queue_t                     *qu;
    ngx_http_chathistory_pg_conn_t  *pc;

    if (q->writer && pool->writer != NULL) {
        return pool->writer->idle ? pool->writer : NULL;
    }

    for (qu = ngx_queue_head(&pool->idle);
         qu != ngx_queue_sentinel(&pool->idle);
         qu = ngx_queue_next(qu))
    {
        pc = ngx_queue_data(qu, ngx_http_chathistory_pg_conn_t, queue);

        if (pc != pool->writer) {
            return pc;
        }
    }

    return (pool->writer != NULL && pool->writer->idle) ? pool->writer : NULL;
}


/* Open one more connection unless the database has just refused us. */
static ngx_int_t
ngx_http_chathistory_pg_grow(ngx_http_chathistory_pg_pool_t *pool)
{
    ngx_http_chathistory_pg_conn_t  *pc;

    if (pool->backoff && (ngx_msec_int_t) (pool->retry_at - ngx_current_msec)
                         > 0)
    {
        return NGX_DECLINED;
    }

    pc = ngx_http_chathistory_pg_conn_open(pool);
    if (pc == NULL) {
        ngx_http_chathistory_count(CH_STAT_DB_CONNECT_FAILURES);
        pool->backoff = ngx_max(pool->backoff * 2, CH_PG_BACKOFF_MIN);
        pool->backoff = ngx_min(pool->backoff, CH_PG_BACKOFF_MAX);
        pool->retry_at = ngx_current_msec + pool->backoff;
        return NGX_ERROR;
    }

    ngx_queue_insert_tail(&pool->busy, &pc->queue);
    pool->nconns++;
    ngx_http_chathistory_pg_pool_counted(pool);

    return NGX_OK;
}


void
ngx_http_chathistory_pg_pool_connected(ngx_http_chathistory_pg_conn_t *pc)
{
    pc->pool->backoff = 0;
    ngx_http_chathistory_count(CH_STAT_DB_CONNECTS);
    ngx_http_chathistory_pg_pool_released(pc);
}


/* A connection is free: give it to the oldest waiter, or let it idle. */
void
ngx_http_chathistory_pg_pool_released(ngx_http_chathistory_pg_conn_t *pc)
{
    ngx_http_chathistory_pg_pool_t   *pool;
    ngx_http_chathistory_pg_query_t  *q;

    pool = pc->pool;

    if (pc->generation != pool->generation) {
        /* made before the server turned read-only */
        ngx_http_chathistory_pg_pool_failed(pc, 1);

        if (pool->nwaiting && pool->nconns < pool->conf->pool_size) {
            (void) ngx_http_chathistory_pg_grow(pool);
        }

        return;
    }

    q = ngx_http_chathistory_pg_waiter(pool, pc);

    if (q != NULL) {
        ngx_http_chathistory_pg_dequeue(q);

        if (q->writer) {
            pool->writer = pc;
        }

        ngx_http_chathistory_pg_conn_send(pc, q);
        return;
    }

    ngx_queue_remove(&pc->queue);
    ngx_queue_insert_head(&pool->idle, &pc->queue);
    pc->idle = 1;
    pool->nidle++;
    ngx_http_chathistory_pg_pool_counted(pool);

    /* an idle connection does not hold a quitting worker back */
    pc->connection->read->cancelable = 1;
    ngx_add_timer(pc->connection->read, pool->conf->keepalive_timeout);
}


/*
 * Who has waited longest for this connection: a batch waits for the
 * writer (for any connection while there is none); any other statement
 * takes any connection.
 */
static ngx_http_chathistory_pg_query_t *
ngx_http_chathistory_pg_waiter(ngx_http_chathistory_pg_pool_t *pool,
    ngx_http_chathistory_pg_conn_t *pc)
{
    ngx_queue_t  *qu;

    if ((pc == pool->writer || pool->writer == NULL)
        && !ngx_queue_empty(&pool->writer_waiting))
    {
        qu = ngx_queue_head(&pool->writer_waiting);

    } else if (!ngx_queue_empty(&pool->waiting)) {
        qu = ngx_queue_head(&pool->waiting);

    } else {
        return NULL;
    }

    return ngx_queue_data(qu, ngx_http_chathistory_pg_query_t, queue);
}


/* An idle connection outlived chathistory_database_keepalive_timeout. */
void
ngx_http_chathistory_pg_pool_expired(ngx_http_chathistory_pg_conn_t *pc)
{
    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, pc->pool->log, 0,
                   "chathistory: closing an idle PostgreSQL connection");

    if (pc == pc->pool->writer) {
        /* idle: no batch waits for it */
        pc->pool->writer = NULL;
    }

    ngx_queue_remove(&pc->queue);
    pc->pool->nidle--;
    pc->pool->nconns--;
    ngx_http_chathistory_pg_pool_counted(pc->pool);
    ngx_http_chathistory_pg_conn_close(pc);
}


/* A connection broke or could not be made: drop it. */
void
ngx_http_chathistory_pg_pool_failed(ngx_http_chathistory_pg_conn_t *pc,
    ngx_uint_t connected)
{
    ngx_uint_t                       writer;
    ngx_http_chathistory_pg_pool_t  *pool;

    pool = pc->pool;

    writer = (pc == pool->writer);

    ngx_queue_remove(&pc->queue);
    pool->nconns--;

    if (pc->idle) {
        pool->nidle--;
    }

    ngx_http_chathistory_pg_pool_counted(pool);
    ngx_http_chathistory_pg_conn_close(pc);

    if (writer) {
        pool->writer = NULL;
        ngx_http_chathistory_pg_writer_lost(pool);
    }

    if (connected) {
        return;
    }

    ngx_http_chathistory_count(CH_STAT_DB_CONNECT_FAILURES);

    pool->backoff = ngx_max(pool->backoff * 2, CH_PG_BACKOFF_MIN);
    pool->backoff = ngx_min(pool->backoff, CH_PG_BACKOFF_MAX);
    pool->retry_at = ngx_current_msec + pool->backoff;

    /* nobody is left to serve the queue */
    if (pool->nconns == 0) {
        ngx_http_chathistory_pg_fail_waiting(pool);
    }
}


/*
 * The writer broke while a batch waited for it: the batch takes another
 * connection, or waits for the next one to be free.
 */
static void
ngx_http_chathistory_pg_writer_lost(ngx_http_chathistory_pg_pool_t *pool)
{
    ngx_queue_t                      *qu;
    ngx_http_chathistory_pg_conn_t   *pc;
    ngx_http_chathistory_pg_query_t  *q;

    if (ngx_queue_empty(&pool->writer_waiting)
        || ngx_queue_empty(&pool->idle))
    {
        return;
    }

    qu = ngx_queue_head(&pool->writer_waiting);
    q = ngx_queue_data(qu, ngx_http_chathistory_pg_query_t, queue);
    ngx_http_chathistory_pg_dequeue(q);

    qu = ngx_queue_head(&pool->idle);
    pc = ngx_queue_data(qu, ngx_http_chathistory_pg_conn_t, queue);

    ngx_http_chathistory_pg_take(pool, pc, q);
}


static void
ngx_http_chathistory_pg_fail_waiting(ngx_http_chathistory_pg_pool_t *pool)
{
    ngx_queue_t                      *qu;
    ngx_http_chathistory_pg_query_t  *q;

    while (!ngx_queue_empty(&pool->writer_waiting)
           || !ngx_queue_empty(&pool->waiting))
    {
        qu = ngx_queue_empty(&pool->writer_waiting)
             ? ngx_queue_head(&pool->waiting)
             : ngx_queue_head(&pool->writer_waiting);
        q = ngx_queue_data(qu, ngx_http_chathistory_pg_query_t, queue);
        ngx_http_chathistory_pg_dequeue(q);
        ngx_http_chathistory_pg_query_finish(q, NULL,
                                         NGX_HTTP_CHATHISTORY_PG_UNREACHABLE);
    }
}


static void
ngx_http_chathistory_pg_enqueue(ngx_http_chathistory_pg_query_t *q)
{
    ngx_http_chathistory_pg_pool_t  *pool;

    pool = q->pool;

    ngx_queue_insert_tail(q->writer ? &pool->writer_waiting : &pool->waiting,
                          &q->queue);
    pool->nwaiting++;
    ngx_http_chathistory_count(CH_STAT_DB_WAITS);
    ngx_http_chathistory_pg_pool_counted(pool);
    q->waiting = 1;

    ngx_add_timer(&q->wait_timer, pool->conf->queue_timeout);
}


/* The pool's gauges, in the counters' zone. */
static void
ngx_http_chathistory_pg_pool_counted(ngx_http_chathistory_pg_pool_t *pool)
{
    ngx_http_chathistory_count_pool(pool->nconns, pool->nidle,
                                    pool->nwaiting);
}


static void
ngx_http_chathistory_pg_dequeue(ngx_http_chathistory_pg_query_t *q)
{
    if (!q->waiting) {
        return;
    }

    ngx_queue_remove(&q->queue);
    q->pool->nwaiting--;
    ngx_http_chathistory_pg_pool_counted(q->pool);
    q->waiting = 0;

    if (q->wait_timer.timer_set) {
        ngx_del_timer(&q->wait_timer);
    }
}


static void
ngx_http_chathistory_pg_wait_timeout(ngx_event_t *ev)
{
    ngx_http_chathistory_pg_query_t  *q;

    q = ev->data;

    ngx_log_error(NGX_LOG_WARN, ev->log, 0,
                  "chathistory: no PostgreSQL connection became free in time");

    ngx_http_chathistory_pg_dequeue(q);
    ngx_http_chathistory_pg_query_finish(q, NULL,
                                         NGX_HTTP_CHATHISTORY_PG_BUSY);
}


/*
 * Answer a query that cannot run from the event loop, never from within
 * the caller: the caller's request may be freed by the answer.
 */
void
ngx_http_chathistory_pg_query_fail(ngx_http_chathistory_pg_query_t *q,
    ngx_http_chathistory_pg_failure_e failure)
{
    q->failure = failure;
    q->wait_timer.handler = ngx_http_chathistory_pg_failed_handler;
    ngx_post_event(&q->wait_timer, &ngx_posted_events);
}


static void
ngx_http_chathistory_pg_failed_handler(ngx_event_t *ev)
{
    ngx_http_chathistory_pg_query_t  *q;

    q = ev->data;

    ngx_http_chathistory_pg_query_finish(q, NULL, q->failure);
}


static void
ngx_http_chathistory_pg_count(ngx_http_chathistory_pg_failure_e failure,
    PGresult *res)
{
    ngx_http_chathistory_stat_e  stat;

    switch (failure) {

    case NGX_HTTP_CHATHISTORY_PG_UNREACHABLE:
        stat = CH_STAT_DB_UNREACHABLE;
        break;

    case NGX_HTTP_CHATHISTORY_PG_BUSY:
        stat = CH_STAT_DB_BUSY;
        break;

    case NGX_HTTP_CHATHISTORY_PG_TIMEOUT:
        stat = CH_STAT_DB_TIMEOUT;
        break;

    default:
        stat = (res != NULL
                && (PQresultStatus(res) == PGRES_TUPLES_OK
                    || PQresultStatus(res) == PGRES_COMMAND_OK))
               ? CH_STAT_DB_OK : CH_STAT_DB_ERROR;
    }

    ngx_http_chathistory_count(stat);
}


/* Hand the outcome to the request, then run what it posted. */
void
ngx_http_chathistory_pg_query_finish(ngx_http_chathistory_pg_query_t *q,
    PGresult *res, ngx_http_chathistory_pg_failure_e failure)
{
    ngx_connection_t  *c;

    if (q->done) {
        return;
    }

    if (ngx_http_chathistory_pg_fall_back(q, res, failure)) {
        return;
    }

    q->done = 1;
    q->failure = failure;

    ngx_http_chathistory_pg_count(failure, res);
    ngx_http_chathistory_memory_used();

    if (q->request == NULL) {
        q->handler(q, res);
        return;
    }

    c = q->request->connection;

    q->handler(q, res);

    ngx_http_run_posted_requests(c);
}


/*
 * A read the replica could not answer (down, too busy, gone away, or its
 * recovery cancelled the statement) is asked of the primary, once; the
 * replica is not used again until its next lag check passes.
 */
static ngx_uint_t
ngx_http_chathistory_pg_fall_back(ngx_http_chathistory_pg_query_t *q,
    PGresult *res, ngx_http_chathistory_pg_failure_e failure)
{
    const char  *state;

    if (q->pool == NULL || !q->pool->replica || q->probe || q->retried) {
        return 0;
    }

    if (failure == NGX_HTTP_CHATHISTORY_PG_OK) {
        if (res == NULL || PQresultStatus(res) != PGRES_FATAL_ERROR) {
            return 0;
        }

        state = ngx_http_chathistory_pg_sqlstate(res);

        if (ngx_strncmp(state, "08", 2) != 0
            && ngx_strncmp(state, "57", 2) != 0
            && ngx_strncmp(state, "53", 2) != 0
            && ngx_strcmp(state, "40001") != 0)
        {
            return 0;
        }
    }

    if (q->pool->usable) {
        ngx_log_error(NGX_LOG_WARN, q->log, 0,
                      "chathistory: the replica at \"%V\" failed a read, "
                      "the primary serves until its next lag check",
                      &q->pool->db->target);
        q->pool->usable = 0;
    }

    q->retried = 1;
    q->failure = NGX_HTTP_CHATHISTORY_PG_OK;
    q->wait_timer.handler = ngx_http_chathistory_pg_wait_timeout;
    ngx_http_chathistory_pg_query_run(q);

    return 1;
}


/*
 * The request is going away: leave the queue, or let the connection
 * finish the statement alone and return to the pool afterwards.
 */
static void
ngx_http_chathistory_pg_query_cleanup(void *data)
{
    ngx_http_chathistory_pg_query_t  *q = data;

    q->done = 1;

    if (q->wait_timer.posted) {
        ngx_delete_posted_event(&q->wait_timer);
    }

    if (q->waiting) {
        ngx_http_chathistory_pg_dequeue(q);
    }

    if (q->conn != NULL) {
        q->conn->query = NULL;
        q->conn = NULL;
    }
}
