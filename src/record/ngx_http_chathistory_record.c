
/*
 * A recorded message's life, from the capture to the database or the
 * spool: its audio encoded (the audio service), written in a batch (the
 * batch writer) or alone when its batch failed, kept in the spool while
 * the database is away and replayed from there. The services report one
 * outcome each through rec->report, to ngx_http_chathistory_record_next(),
 * and never call each other.
 */


#include "ngx_http_chathistory_record.h"
#include "ngx_http_chathistory_audio.h"
#include "ngx_http_chathistory_batch.h"
#include "ngx_http_chathistory_pg.h"
#include "ngx_http_chathistory_spool.h"
#include "ngx_http_chathistory_statements.h"


static void ngx_http_chathistory_record_next(
    ngx_http_chathistory_record_t *rec,
    ngx_http_chathistory_record_outcome_e outcome);
static void ngx_http_chathistory_record_store_one(
    ngx_http_chathistory_record_t *rec);
static void ngx_http_chathistory_record_stored(
    ngx_http_chathistory_pg_query_t *q, PGresult *res);
static void ngx_http_chathistory_record_missing(
    ngx_http_chathistory_record_t *rec);


ngx_int_t
ngx_http_chathistory_record_init(ngx_cycle_t *cycle,
    ngx_http_chathistory_main_conf_t *cmcf)
{
    return ngx_http_chathistory_spool_init(cycle, cmcf,
                                           ngx_http_chathistory_record_next);
}


/* A record from the capture begins its life. */
void
ngx_http_chathistory_record_start(ngx_http_chathistory_record_t *rec)
{
    rec->report = ngx_http_chathistory_record_next;

    if (rec->storage.len
        && (rec->audio != NULL || rec->audio_fd != NGX_INVALID_FILE))
    {
        ngx_http_chathistory_audio_store(rec);
        return;
    }

    ngx_http_chathistory_batch_add(rec);
}


/* What a service reports decides where the record goes next. */
static void
ngx_http_chathistory_record_next(ngx_http_chathistory_record_t *rec,
    ngx_http_chathistory_record_outcome_e outcome)
{
    switch (outcome) {

    case CH_RECORD_REPLAYED:
        rec->report = ngx_http_chathistory_record_next;
        ngx_http_chathistory_batch_add(rec);
        return;

    case CH_RECORD_ENCODED:
        ngx_http_chathistory_batch_add(rec);
        return;

    case CH_RECORD_STORED:
        ngx_http_chathistory_spool_done(rec, 1);
        return;

    case CH_RECORD_ALONE:
        ngx_http_chathistory_record_store_one(rec);
        return;

    case CH_RECORD_GONE:
        ngx_http_chathistory_record_missing(rec);
        return;

    default: /* CH_RECORD_AWAY */
        ngx_http_chathistory_spool_write(rec);
        return;
    }
}


/*
 * One statement writes the message and its embedding job together: the
 * way a record goes when its batch could not be written as a whole.
 */
static void
ngx_http_chathistory_record_store_one(ngx_http_chathistory_record_t *rec)
{
    ngx_uint_t                        i;
    ngx_http_chathistory_pg_query_t  *q;

    q = ngx_http_chathistory_pg_query_alloc(rec->pool, rec->log,
                                        NGX_HTTP_CHATHISTORY_SQL_MESSAGE_RECORD,
                                        ngx_http_chathistory_record_stored,
                                        rec);
    if (q == NULL) {
        ngx_http_chathistory_record_next(rec, CH_RECORD_AWAY);
        return;
    }

    for (i = 0; i < NGX_HTTP_CHATHISTORY_RECORD_FIELDS; i++) {
        q->values[i] = rec->values[i];
    }

    q->nparams = NGX_HTTP_CHATHISTORY_RECORD_FIELDS;

    ngx_http_chathistory_pg_query_run(q);
}


static void
ngx_http_chathistory_record_stored(ngx_http_chathistory_pg_query_t *q,
    PGresult *res)
{
    ngx_http_chathistory_record_t  *rec = q->data;

    if (res == NULL
        || (PQresultStatus(res) != PGRES_TUPLES_OK
            && ngx_strncmp(ngx_http_chathistory_pg_sqlstate(res), "08", 2)
               == 0))
    {
        /* the database is away: keep the message until it is back */
        ngx_http_chathistory_record_next(rec, CH_RECORD_AWAY);
        return;
    }

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        ngx_log_error(NGX_LOG_ERR, rec->log, 0,
                      "chathistory: message %s not recorded: %s",
                      rec->id.text, PQresultErrorMessage(res));
        ngx_http_chathistory_count(CH_STAT_MESSAGE_REJECTED);
        ngx_http_chathistory_spool_done(rec, 0);
        return;
    }

    if (ngx_strcmp(PQgetvalue(res, 0, 0), "0") == 0) {
        ngx_http_chathistory_record_next(rec, CH_RECORD_GONE);
        return;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, rec->log, 0,
                   "chathistory: message %s recorded", rec->id.text);

    ngx_http_chathistory_count(CH_STAT_MESSAGE_STORED);
    ngx_http_chathistory_record_next(rec, CH_RECORD_STORED);
}


/* The session went away before its message could be written. */
static void
ngx_http_chathistory_record_missing(ngx_http_chathistory_record_t *rec)
{
    ngx_log_error(NGX_LOG_INFO, rec->log, 0,
                  "chathistory: message %s not recorded: session %s "
                  "does not exist", rec->id.text, rec->session_id.text);
    ngx_http_chathistory_count(CH_STAT_MESSAGE_SESSION_GONE);

    ngx_http_chathistory_audio_discard(rec);
    ngx_http_chathistory_spool_done(rec, 1);
}


/*
 * The worker process is leaving without waiting for the database (nginx
 * -s stop, or a single process told to quit): what the batch writer holds
 * goes to the spool.
 */
void
ngx_http_chathistory_record_exit(void)
{
    ngx_http_chathistory_spool_exit();
    ngx_http_chathistory_batch_exit();
}
