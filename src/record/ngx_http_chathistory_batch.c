
/*
 * Records are written in batches: what a worker process recorded within
 * chathistory_capture_flush goes to the database in one statement, one
 * batch at a time, so that recording takes one connection of the pool
 * however busy the pipeline is, and leaves the rest to the requests. A
 * statement and its answer per message would cost the worker more than
 * the message: under load, the requests would wait for it.
 */


#include "ngx_http_chathistory_batch.h"
#include "ngx_http_chathistory_pg.h"
#include "ngx_http_chathistory_statements.h"


#define CH_BATCH_MAX    256

/*
 * A statement's size, about: libpq's buffers grow to the largest message
 * a connection carried and keep that size (batches run on one connection
 * of the pool, its writer, for that reason).
 */
#define CH_BATCH_BYTES  65536


typedef struct {
    ngx_pool_t                     *pool;
    ngx_log_t                      *log;
    char                           *json;
    ngx_uint_t                      n;
    unsigned                        retried:1;
    ngx_http_chathistory_record_t  *recs[CH_BATCH_MAX];
} ngx_http_chathistory_batch_t;


static void ngx_http_chathistory_batch_schedule(
    ngx_http_chathistory_main_conf_t *cmcf, ngx_log_t *log);
static void ngx_http_chathistory_batch_flush(ngx_event_t *ev);
static ngx_uint_t ngx_http_chathistory_batch_take(void);
static char *ngx_http_chathistory_batch_json(ngx_http_chathistory_batch_t *b);
static void ngx_http_chathistory_batch_send(ngx_http_chathistory_batch_t *b);
static ngx_uint_t ngx_http_chathistory_batch_retry(
    ngx_http_chathistory_batch_t *b, PGresult *res);
static void ngx_http_chathistory_batch_stored(
    ngx_http_chathistory_pg_query_t *q, PGresult *res);
static void ngx_http_chathistory_batch_fail(ngx_http_chathistory_batch_t *b,
    ngx_uint_t one_by_one);
static void ngx_http_chathistory_batch_spool_pending(void);


/* a worker process's records waiting for their batch, and the batch out */
typedef struct {
    ngx_http_chathistory_record_t  *pending[CH_BATCH_MAX];
    ngx_uint_t                      npending;
    ngx_http_chathistory_batch_t   *flushing;
    ngx_event_t                     flush_event;
} ngx_http_chathistory_batches_t;


static ngx_http_chathistory_batches_t  ngx_http_chathistory_batches;


void
ngx_http_chathistory_batch_add(ngx_http_chathistory_record_t *rec)
{
    ngx_http_chathistory_batches_t  *bs;

    bs = &ngx_http_chathistory_batches;

    if (bs->npending == CH_BATCH_MAX) {
        /* the database is far behind: the spool keeps it durably */
        rec->report(rec, CH_RECORD_AWAY);
        return;
    }

    bs->pending[bs->npending++] = rec;

    if (bs->npending == 1) {
        ngx_http_chathistory_batch_schedule(rec->conf, rec->log);

    } else if (bs->npending == CH_BATCH_MAX && !bs->flushing) {
        /* a full batch waits for nothing more */
        ngx_http_chathistory_batch_flush(&bs->flush_event);
    }
}


/*
 * The first record of a batch starts the wait for others. The timer is
 * not cancelable: a worker that quits writes what it recorded first.
 */
static void
ngx_http_chathistory_batch_schedule(ngx_http_chathistory_main_conf_t *cmcf,
    ngx_log_t *log)
{
    ngx_event_t  *ev;

    ev = &ngx_http_chathistory_batches.flush_event;

    if (ev->timer_set || ev->posted) {
        return;
    }

    ngx_http_chathistory_timer_init(ev, ngx_http_chathistory_batch_flush,
                                    log, 0);

    if (cmcf->flush_interval == 0) {
        /* after this turn of the loop, with whatever else it recorded */
        ngx_post_event(ev, &ngx_posted_events);
        return;
    }

    ngx_add_timer(ev, cmcf->flush_interval);
}


static void
ngx_http_chathistory_batch_flush(ngx_event_t *ev)
{
    ngx_pool_t                    *pool;
    ngx_http_chathistory_batch_t  *b;

    if (ngx_http_chathistory_batches.flushing
        || ngx_http_chathistory_batches.npending == 0)
    {
        /* when the batch in flight is written, its answer sends these */
        return;
    }

    if (ev->timer_set) {
        ngx_del_timer(ev);
    }

    if (ev->posted) {
        ngx_delete_posted_event(ev);
    }

    pool = ngx_create_pool(16384, ev->log);
    b = pool ? ngx_pcalloc(pool, sizeof(ngx_http_chathistory_batch_t)) : NULL;

    if (b == NULL) {
        if (pool) {
            ngx_destroy_pool(pool);
        }

        /* no memory for a batch: the spool keeps them, one by one */
        ngx_http_chathistory_batch_spool_pending();
        return;
    }

    b->pool = pool;
    b->log = ev->log;
    b->n = ngx_http_chathistory_batch_take();
    ngx_memcpy(b->recs, ngx_http_chathistory_batches.pending,
               b->n * sizeof(ngx_http_chathistory_record_t *));

    /* the rest goes when this batch is answered */
    ngx_http_chathistory_batches.npending -= b->n;
    ngx_memmove(ngx_http_chathistory_batches.pending,
                ngx_http_chathistory_batches.pending + b->n,
                ngx_http_chathistory_batches.npending
                * sizeof(ngx_http_chathistory_record_t *));

    b->json = ngx_http_chathistory_batch_json(b);

    if (b->json == NULL) {
        ngx_http_chathistory_batch_fail(b, 1);
        return;
    }

    ngx_http_chathistory_batch_send(b);
}


static void
ngx_http_chathistory_batch_send(ngx_http_chathistory_batch_t *b)
{
    ngx_http_chathistory_pg_query_t  *q;

    q = ngx_http_chathistory_pg_query_alloc(b->pool, b->log,
                               NGX_HTTP_CHATHISTORY_SQL_MESSAGE_RECORD_BATCH,
                               ngx_http_chathistory_batch_stored, b);
    if (q == NULL) {
        ngx_http_chathistory_batch_fail(b, 1);
        return;
    }

    q->values[0] = b->json;
    q->nparams = 1;
    q->writer = 1;

    ngx_http_chathistory_batches.flushing = b;

    ngx_http_chathistory_pg_query_run(q);
}


/* How many of the pending records make a statement of CH_BATCH_BYTES. */
static ngx_uint_t
ngx_http_chathistory_batch_take(void)
{
    size_t                          bytes;
    ngx_uint_t                      n, i;
    ngx_http_chathistory_record_t  *rec;

    bytes = 0;

    for (n = 0; n < ngx_http_chathistory_batches.npending; /* void */) {
        rec = ngx_http_chathistory_batches.pending[n++];

        /* the names, quotes and commas around the values */
        bytes += 200;

        for (i = 0; i < NGX_HTTP_CHATHISTORY_RECORD_FIELDS; i++) {
            if (rec->values[i] != NULL) {
                bytes += ngx_strlen(rec->values[i]);
            }
        }

        if (bytes >= CH_BATCH_BYTES) {
            break;
        }
    }

    return n;
}


/* The batch as a JSON array of records with the canonical field names. */
static char *
ngx_http_chathistory_batch_json(ngx_http_chathistory_batch_t *b)
{
    char        *text, *copy;
    cJSON       *array, *item;
    size_t       len;
    ngx_uint_t   i;

    array = cJSON_CreateArray();
    if (array == NULL) {
        return NULL;
    }

    for (i = 0; i < b->n; i++) {
        item = ngx_http_chathistory_record_json(b->recs[i]);

        if (item == NULL || !cJSON_AddItemToArray(array, item)) {
            cJSON_Delete(item);
            cJSON_Delete(array);
            return NULL;
        }
    }

    text = cJSON_PrintUnformatted(array);
    cJSON_Delete(array);

    if (text == NULL) {
        return NULL;
    }

    len = ngx_strlen(text) + 1;

    copy = ngx_pnalloc(b->pool, len);
    if (copy != NULL) {
        ngx_memcpy(copy, text, len);
    }

    cJSON_free(text);

    return copy;
}


/* A row a record, in order: does its session exist. */
static void
ngx_http_chathistory_batch_stored(ngx_http_chathistory_pg_query_t *q,
    PGresult *res)
{
    ngx_uint_t                     i;
    ngx_http_chathistory_batch_t  *b = q->data;

    ngx_http_chathistory_batches.flushing = NULL;

    if (ngx_http_chathistory_batch_retry(b, res)) {
        return;
    }

    if (res == NULL
        || (PQresultStatus(res) != PGRES_TUPLES_OK
            && ngx_strncmp(ngx_http_chathistory_pg_sqlstate(res), "08", 2)
               == 0))
    {
        /* the database is away: the spool keeps them */
        ngx_http_chathistory_batch_fail(b, 0);

    } else if (PQresultStatus(res) != PGRES_TUPLES_OK
               || (ngx_uint_t) PQntuples(res) != b->n)
    {
        /* one bad record must not take the others along */
        ngx_log_error(NGX_LOG_ERR, q->log, 0,
                      "chathistory: a batch of %ui messages failed, writing "
                      "them one by one: %s", b->n,
                      res ? PQresultErrorMessage(res) : "");
        ngx_http_chathistory_batch_fail(b, 1);

    } else {
        ngx_http_chathistory_count(CH_STAT_MESSAGE_BATCHES);

        for (i = 0; i < b->n; i++) {
            if (PQgetvalue(res, i, 1)[0] == 't') {
                ngx_http_chathistory_count(CH_STAT_MESSAGE_STORED);
                b->recs[i]->report(b->recs[i], CH_RECORD_STORED);

            } else {
                b->recs[i]->report(b->recs[i], CH_RECORD_GONE);
            }
        }

        ngx_destroy_pool(b->pool);
    }

    /* what came while this batch was written goes next, when it has
     * waited long enough (its timer went off meanwhile), and once this
     * connection, the pool's writer, is back in the pool */
    if (ngx_http_chathistory_batches.npending
        && !ngx_http_chathistory_batches.flush_event.timer_set
        && !ngx_http_chathistory_batches.flush_event.posted)
    {
        ngx_post_event(&ngx_http_chathistory_batches.flush_event,
                       &ngx_posted_events);
    }
}


/*
 * PostgreSQL aborted the batch to break a deadlock or a serialization
 * conflict with another transaction: nothing is wrong with its messages,
 * and the same statement, sent again, goes through once the other one is
 * done. Once: a second conflict means something keeps crossing it, and
 * the messages go one by one.
 */
static ngx_uint_t
ngx_http_chathistory_batch_retry(ngx_http_chathistory_batch_t *b,
    PGresult *res)
{
    const char  *state;

    if (res == NULL || b->retried
        || PQresultStatus(res) != PGRES_FATAL_ERROR)
    {
        return 0;
    }

    state = ngx_http_chathistory_pg_sqlstate(res);

    if (ngx_strcmp(state, "40P01") != 0 && ngx_strcmp(state, "40001") != 0) {
        return 0;
    }

    ngx_log_error(NGX_LOG_WARN, b->log, 0,
                  "chathistory: a batch of %ui messages was aborted, "
                  "sending it again: %s", b->n, PQresultErrorMessage(res));

    b->retried = 1;
    ngx_http_chathistory_batch_send(b);

    return 1;
}


static void
ngx_http_chathistory_batch_fail(ngx_http_chathistory_batch_t *b,
    ngx_uint_t one_by_one)
{
    ngx_uint_t  i;

    for (i = 0; i < b->n; i++) {
        b->recs[i]->report(b->recs[i],
                           one_by_one ? CH_RECORD_ALONE : CH_RECORD_AWAY);
    }

    ngx_destroy_pool(b->pool);
}


static void
ngx_http_chathistory_batch_spool_pending(void)
{
    ngx_http_chathistory_record_t  *rec;

    while (ngx_http_chathistory_batches.npending) {
        rec = ngx_http_chathistory_batches.pending[
                  --ngx_http_chathistory_batches.npending];
        rec->report(rec, CH_RECORD_AWAY);
    }
}


/*
 * The worker process is leaving: what it holds is reported away. The
 * batch in flight may be written already: its replay finds its messages
 * there and adds nothing.
 */
void
ngx_http_chathistory_batch_exit(void)
{
    ngx_http_chathistory_batch_t  *b;

    b = ngx_http_chathistory_batches.flushing;
    ngx_http_chathistory_batches.flushing = NULL;

    if (b != NULL) {
        ngx_http_chathistory_batch_fail(b, 0);
    }

    ngx_http_chathistory_batch_spool_pending();
}
