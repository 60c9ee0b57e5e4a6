
/*
 * Writing a batch's outcome. The embeddings and the done jobs go in one
 * statement, so in one transaction: a message gets its vector if and only
 * if its job becomes done under our lease. The statement is sent without
 * waiting for its answer, so that PostgreSQL writes one batch while the
 * next one is being embedded; chw_store_collect() reads the answer.
 * Failed and released jobs are rare and written one by one before it.
 */


#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>

#include "chathistory_worker.h"


typedef struct {
    char        *done;       /* {id,...}: the jobs to mark done */
    char        *jobs;       /* {id,...}: the jobs with a vector */
    char        *messages;   /* {uuid,...}: their messages */
    char        *vectors;    /* vector[] in binary */
    int          vectors_len;
} chw_store_params_t;


static int chw_store_params(chw_store_t *st, chw_batch_t *b,
    chw_store_params_t *p);
static char *chw_store_vectors(chw_store_t *st, chw_batch_t *b, int n,
    int *len);
static char *chw_store_put32(char *p, uint32_t v);
static void chw_store_params_free(chw_store_params_t *p);
static void chw_store_failed(chw_store_t *st, chw_batch_t *b,
    const char *error);


/*
 * The vectors are stored only for jobs the UPDATE of jobs returns, those
 * still ours: a worker whose lease passed writes nothing.
 */
static const char  chw_store_sql[] =
    "WITH done AS ("
      "UPDATE jobs SET status = 'done', locked_until = NULL, "
      "last_error = NULL, updated_at = now() "
      "WHERE id = ANY($1::bigint[]) AND locked_by = $2 "
      "AND status = 'running' RETURNING id), "
    "stored AS ("
      "UPDATE messages m SET embedding = v.embedding, embedding_model = $3 "
      "FROM unnest($4::bigint[], $5::uuid[], $6::vector[]) "
      "AS v (job_id, message_id, embedding) "
      "WHERE m.id = v.message_id AND v.job_id IN (SELECT id FROM done) "
      "RETURNING m.id) "
    "SELECT id FROM done";

static const char  chw_store_type_sql[] =
    "SELECT atttypid FROM pg_attribute WHERE attrelid = 'messages'::regclass "
    "AND attname = 'embedding'";


int
chw_store_init(chw_store_t *st, PGconn *conn, const char *me,
    chw_config_t *cf, chw_embedder_t *e)
{
    char  *v;

    memset(st, 0, sizeof(chw_store_t));
    st->conn = conn;
    st->me = me;
    st->cf = cf;
    st->model = chw_embed_model(e);
    st->dim = chw_embed_dim(e);

    /* binary vector[] elements name their type: pgvector's, by its oid */
    v = chw_pg_value(conn, chw_store_type_sql, 0, NULL);
    if (v == NULL) {
        chw_log(CHW_LOG_ERROR, "cannot read the type of messages.embedding",
                NULL);
        return CHW_ERROR;
    }

    st->vector_oid = (Oid) strtoul(v, NULL, 10);
    free(v);

    return CHW_OK;
}


/*
 * Releases the aborted jobs and finishes the failed ones (waiting for
 * each), then sends the statement for the rest. CHW_DECLINED: nothing to
 * send, the batch is written.
 */
int
chw_store_send(chw_store_t *st, chw_batch_t *b)
{
    int                  i, ok, lengths[6];
    chw_job_t           *job;
    const char          *values[6];
    static const int     formats[6] = { 0, 0, 0, 0, 0, 1 };
    chw_store_params_t   p;

    ok = 0;

    for (i = 0; i < b->n; i++) {
        job = &b->jobs[i];

        if (job->rc == CHW_ABORTED) {
            chw_jobs_release(st->conn, st->me, job, 1);

        } else if (job->rc != CHW_OK) {
            chw_jobs_finish(st->conn, st->me, st->cf, job);

        } else {
            ok++;
        }
    }

    if (ok == 0) {
        return CHW_DECLINED;
    }

    if (chw_store_params(st, b, &p) != CHW_OK) {
        chw_log(CHW_LOG_ERROR, "out of memory", NULL);
        chw_store_failed(st, b, "out of memory");
        return CHW_DECLINED;
    }

    values[0] = p.done;
    values[1] = st->me;
    values[2] = st->model;
    values[3] = p.jobs;
    values[4] = p.messages;
    values[5] = p.vectors;
    memset(lengths, 0, sizeof(lengths));
    lengths[5] = p.vectors_len;

    ok = chw_pg_send(st->conn, chw_store_sql, 6, values, lengths, formats);
    chw_store_params_free(&p);

    if (ok != CHW_OK) {
        chw_pg_log_error(st->conn, NULL, "cannot store the embeddings", NULL,
                         NULL);
        chw_store_failed(st, b, "cannot store the embeddings");
        return CHW_DECLINED;
    }

    st->sent = b;

    return CHW_OK;
}


/* the answer to the statement sent: the jobs done, the others lost */
int
chw_store_collect(chw_store_t *st)
{
    int           i, r, found;
    char          error[200];
    PGresult     *res;
    chw_job_t    *job;
    chw_batch_t  *b;

    b = st->sent;
    st->sent = NULL;

    if (b == NULL) {
        return CHW_OK;
    }

    res = chw_pg_result(st->conn);

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        chw_pg_log_error(st->conn, res, "cannot store the embeddings", NULL,
                         NULL);
        snprintf(error, sizeof(error), "cannot store the embeddings: %s",
                 chw_pg_error(st->conn, res));
        PQclear(res);
        chw_store_failed(st, b, error);
        return CHW_ERROR;
    }

    for (i = 0; i < b->n; i++) {
        job = &b->jobs[i];

        if (job->rc != CHW_OK) {
            continue;
        }

        found = 0;

        for (r = 0; r < PQntuples(res); r++) {
            if (strtoll(PQgetvalue(res, r, 0), NULL, 10) == job->id) {
                found = 1;
                break;
            }
        }

        if (found) {
            chw_jobs_log_done(job);

        } else {
            chw_jobs_log_lost(job);
        }
    }

    PQclear(res);

    return CHW_OK;
}


/*
 * The statement failed as a whole (nothing of it was written): each job
 * goes the way of a failed one, retried later, so that one bad row does not
 * hold the others for ever. Without a connection they stay running, and
 * their leases pass. (Two jobs of one message in two workers' batches can
 * deadlock on its row; PostgreSQL cancels one statement, and this retries.)
 */
static void
chw_store_failed(chw_store_t *st, chw_batch_t *b, const char *error)
{
    int         i;
    chw_job_t  *job;

    for (i = 0; i < b->n; i++) {
        job = &b->jobs[i];

        if (job->rc != CHW_OK) {
            continue;
        }

        job->rc = CHW_ERROR;
        job->vec = NULL;
        snprintf(job->error, sizeof(job->error), "%s", error);

        if (PQstatus(st->conn) == CONNECTION_OK) {
            chw_jobs_finish(st->conn, st->me, st->cf, job);

        } else {
            job->outcome = CHW_JOB_LOST;
        }
    }
}


static int
chw_store_params(chw_store_t *st, chw_batch_t *b, chw_store_params_t *p)
{
    int         i, n;
    char       *d, *j, *m;
    chw_job_t  *job;

    memset(p, 0, sizeof(chw_store_params_t));

    /* a bigint is at most 20 characters, a uuid 36, each with a comma */
    p->done = malloc((size_t) b->n * 21 + 3);
    p->jobs = malloc((size_t) b->n * 21 + 3);
    p->messages = malloc((size_t) b->n * (CHW_UUID_LEN + 1) + 3);

    if (p->done == NULL || p->jobs == NULL || p->messages == NULL) {
        chw_store_params_free(p);
        return CHW_ERROR;
    }

    d = p->done;
    j = p->jobs;
    m = p->messages;
    *d++ = '{';
    *j++ = '{';
    *m++ = '{';
    n = 0;

    for (i = 0; i < b->n; i++) {
        job = &b->jobs[i];

        if (job->rc != CHW_OK) {
            continue;
        }

        d += sprintf(d, "%s%lld", d - p->done > 1 ? "," : "", job->id);

        if (job->vec != NULL) {
            j += sprintf(j, "%s%lld", n ? "," : "", job->id);
            m += sprintf(m, "%s%s", n ? "," : "", job->message_id);
            n++;
        }
    }

    strcpy(d, "}");
    strcpy(j, "}");
    strcpy(m, "}");

    p->vectors = chw_store_vectors(st, b, n, &p->vectors_len);
    if (p->vectors == NULL) {
        chw_store_params_free(p);
        return CHW_ERROR;
    }

    return CHW_OK;
}


/*
 * A one-dimensional array of n vectors in PostgreSQL's binary format, the
 * elements as pgvector's vector_recv() reads them: int16 dim, int16 unused
 * (0), then dim float4, all in network byte order. No text to format and
 * parse: a 768-dimensional vector is 3 kB instead of some 8 kB of text.
 */
static char *
chw_store_vectors(chw_store_t *st, chw_batch_t *b, int n, int *len)
{
    int         i, k;
    char       *buf, *p;
    size_t      size, elem;
    uint32_t    u;
    chw_job_t  *job;

    elem = 4 + (size_t) st->dim * 4;
    size = 20 + (size_t) n * (4 + elem);

    buf = malloc(size);
    if (buf == NULL) {
        return NULL;
    }

    p = buf;
    p = chw_store_put32(p, 1);                  /* dimensions */
    p = chw_store_put32(p, 0);                  /* no NULLs */
    p = chw_store_put32(p, st->vector_oid);
    p = chw_store_put32(p, (uint32_t) n);       /* length */
    p = chw_store_put32(p, 1);                  /* lower bound */

    for (i = 0; i < b->n; i++) {
        job = &b->jobs[i];

        if (job->rc != CHW_OK || job->vec == NULL) {
            continue;
        }

        p = chw_store_put32(p, (uint32_t) elem);
        p = chw_store_put32(p, (uint32_t) st->dim << 16);   /* unused: 0 */

        for (k = 0; k < st->dim; k++) {
            memcpy(&u, &job->vec[k], 4);
            p = chw_store_put32(p, u);
        }
    }

    *len = (int) (p - buf);

    return buf;
}


/* big-endian, as every number of the binary format */
static char *
chw_store_put32(char *p, uint32_t v)
{
    v = htonl(v);
    memcpy(p, &v, 4);

    return p + 4;
}


static void
chw_store_params_free(chw_store_params_t *p)
{
    free(p->done);
    free(p->jobs);
    free(p->messages);
    free(p->vectors);
    memset(p, 0, sizeof(chw_store_params_t));
}
