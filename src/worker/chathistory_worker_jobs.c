
/*
 * The job table: claiming a batch under a lease, finishing, retrying with
 * backoff, releasing. Every change to a claimed job checks locked_by, so a
 * worker whose lease has passed cannot overwrite its successor's work.
 */


#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "chathistory_worker.h"


static double chw_jobs_backoff(chw_config_t *cf, int attempts);


/* running jobs whose lease passed with no attempt left: a dead worker's */
#define CHW_JOBS_EXPIRE_EVERY  1.0     /* seconds */

static const char  chw_jobs_expire[] =
    "UPDATE jobs SET status = 'failed', locked_until = NULL, "
    "updated_at = now(), last_error = concat_ws('; ', last_error, "
    "'lease of ' || locked_by || ' expired on the last attempt') "
    "WHERE status = 'running' AND locked_until < now() "
    "AND attempts >= max_attempts";

static const char  chw_jobs_claim_sql[] =
    "UPDATE jobs SET status = 'running', locked_by = $1, "
    "locked_until = now() + make_interval(secs => $2::float8), "
    "attempts = attempts + 1, updated_at = now() "
    "WHERE id IN (SELECT id FROM jobs "
    "WHERE (status = 'queued' AND run_at <= now()) "
    "OR (status = 'running' AND locked_until < now() "
    "AND attempts < max_attempts) "
    "ORDER BY run_at LIMIT $3 FOR UPDATE SKIP LOCKED) "
    "RETURNING id, kind, payload, attempts, max_attempts";

static const char  chw_jobs_done_sql[] =
    "UPDATE jobs SET status = 'done', locked_until = NULL, "
    "last_error = NULL, updated_at = now() "
    "WHERE id = $1 AND locked_by = $2 AND status = 'running'";

static const char  chw_jobs_fail_sql[] =
    "UPDATE jobs SET "
    "status = CASE WHEN attempts >= max_attempts "
    "THEN 'failed' ELSE 'queued' END, "
    "run_at = CASE WHEN attempts >= max_attempts THEN run_at "
    "ELSE now() + make_interval(secs => $3::float8) END, "
    "locked_until = NULL, last_error = $4, updated_at = now() "
    "WHERE id = $1 AND locked_by = $2 AND status = 'running' "
    "RETURNING status";

static const char  chw_jobs_release_sql[] =
    "UPDATE jobs SET status = 'queued', run_at = now(), "
    "attempts = greatest(attempts - 1, 0), locked_until = NULL, "
    "updated_at = now() "
    "WHERE id = $1 AND locked_by = $2 AND status = 'running'";

/* the attempt counts: a job that kills the connection does not loop */
static const char  chw_jobs_requeue_sql[] =
    "UPDATE jobs SET status = 'queued', run_at = now(), "
    "locked_until = NULL, updated_at = now() "
    "WHERE locked_by = $1 AND status = 'running'";

static const char  chw_jobs_next_sql[] =
    "SELECT count(*), extract(epoch FROM min(CASE WHEN status = 'queued' "
    "THEN run_at ELSE locked_until END) - now()) "
    "FROM jobs WHERE status IN ('queued', 'running')";


/*
 * Claims up to limit due jobs (and those of workers whose lease passed)
 * into b; b->jobs point into b->claimed, cleared by chw_batch_free().
 * The expired leases with no attempt left are failed at most once a
 * second (the claim passes them by meanwhile): a round trip per batch
 * less, for something that happens only when a worker died.
 */
int
chw_jobs_claim(PGconn *conn, const char *me, double lease, int limit,
    chw_batch_t *b)
{
    int          i, n;
    char         slease[32], slimit[16];
    PGresult    *res;
    chw_job_t   *job;
    const char  *params[3];

    static double  next_expire;

    if (chw_now() >= next_expire) {
        if (chw_pg_command(conn, chw_jobs_expire, 0, NULL) != CHW_OK) {
            return CHW_ERROR;
        }

        next_expire = chw_now() + CHW_JOBS_EXPIRE_EVERY;
    }

    snprintf(slease, sizeof(slease), "%.3f", lease);
    snprintf(slimit, sizeof(slimit), "%d", limit);
    params[0] = me;
    params[1] = slease;
    params[2] = slimit;

    res = chw_pg_exec(conn, chw_jobs_claim_sql, 3, params);

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        chw_pg_log_error(conn, res, "cannot claim jobs", NULL, NULL);
        PQclear(res);
        return CHW_ERROR;
    }

    b->claimed = res;

    n = PQntuples(res);
    if (n == 0) {
        return 0;
    }

    b->jobs = calloc(n, sizeof(chw_job_t));
    if (b->jobs == NULL) {
        chw_log(CHW_LOG_ERROR, "out of memory", NULL);
        return CHW_ERROR;
    }

    for (i = 0; i < n; i++) {
        job = &b->jobs[i];
        job->id = strtoll(PQgetvalue(res, i, 0), NULL, 10);
        job->kind = PQgetvalue(res, i, 1);
        job->payload = PQgetvalue(res, i, 2);
        job->attempts = atoi(PQgetvalue(res, i, 3));
        job->max_attempts = atoi(PQgetvalue(res, i, 4));
        job->rc = CHW_ERROR;
    }

    b->n = n;

    return n;
}


/* records job->rc: done, or retried later, or failed for good */
int
chw_jobs_finish(PGconn *conn, const char *me, chw_config_t *cf,
    chw_job_t *job)
{
    char         sid[32], sdelay[32], sattempt[16];
    PGresult    *res;
    const char  *params[4], *status;

    snprintf(sid, sizeof(sid), "%lld", job->id);
    params[0] = sid;
    params[1] = me;

    if (job->rc == CHW_OK) {
        res = chw_pg_exec(conn, chw_jobs_done_sql, 2, params);
        status = "done";

    } else {
        snprintf(sdelay, sizeof(sdelay), "%.3f",
                 chw_jobs_backoff(cf, job->attempts));
        params[2] = sdelay;
        params[3] = job->error;
        res = chw_pg_exec(conn, chw_jobs_fail_sql, 4, params);
        status = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) > 0
                 ? PQgetvalue(res, 0, 0) : NULL;
    }

    if (PQresultStatus(res) != PGRES_COMMAND_OK
        && PQresultStatus(res) != PGRES_TUPLES_OK)
    {
        /* still running: its lease passes and it is taken again */
        job->outcome = CHW_JOB_LOST;
        chw_pg_log_error(conn, res, "cannot finish a job", "job", sid);
        PQclear(res);
        return CHW_ERROR;
    }

    snprintf(sattempt, sizeof(sattempt), "%d", job->attempts);

    if ((job->rc == CHW_OK && strcmp(PQcmdTuples(res), "1") != 0)
        || status == NULL)
    {
        chw_jobs_log_lost(job);

    } else if (job->rc == CHW_OK) {
        chw_jobs_log_done(job);

    } else {
        job->outcome = strcmp(status, "failed") == 0 ? CHW_JOB_FAILED
                                                     : CHW_JOB_RETRY;
        chw_log(job->outcome == CHW_JOB_FAILED ? CHW_LOG_ERROR : CHW_LOG_WARN,
                job->outcome == CHW_JOB_FAILED ? "job failed"
                                               : "job will be retried",
                "job", sid, "kind", job->kind, "attempt", sattempt,
                "retry_in", job->outcome == CHW_JOB_RETRY ? sdelay : NULL,
                "error", job->error, NULL);
    }

    PQclear(res);

    return CHW_OK;
}


void
chw_jobs_log_done(chw_job_t *job)
{
    char  sid[32], sattempt[16];

    snprintf(sid, sizeof(sid), "%lld", job->id);
    snprintf(sattempt, sizeof(sattempt), "%d", job->attempts);

    job->outcome = CHW_JOB_DONE;
    chw_log(CHW_LOG_INFO, "job done", "job", sid, "kind", job->kind,
            "attempt", sattempt, NULL);
}


void
chw_jobs_log_lost(chw_job_t *job)
{
    char  sid[32];

    snprintf(sid, sizeof(sid), "%lld", job->id);

    job->outcome = CHW_JOB_LOST;
    chw_log(CHW_LOG_WARN, "job lease lost, another worker has it",
            "job", sid, "kind", job->kind, NULL);
}


void
chw_batch_free(chw_batch_t *b)
{
    if (b == NULL) {
        return;
    }

    PQclear(b->messages);
    PQclear(b->claimed);
    free(b->jobs);
    free(b->vecs);
    free(b);
}


/* gives jobs back untouched, for the next worker (second SIGTERM) */
int
chw_jobs_release(PGconn *conn, const char *me, chw_job_t *jobs, int n)
{
    int          i, rc;
    char         sid[32];
    const char  *params[2];

    rc = CHW_OK;

    for (i = 0; i < n; i++) {
        snprintf(sid, sizeof(sid), "%lld", jobs[i].id);
        params[0] = sid;
        params[1] = me;

        if (chw_pg_command(conn, chw_jobs_release_sql, 2, params) != CHW_OK) {
            rc = CHW_ERROR;
            continue;
        }

        chw_log(CHW_LOG_INFO, "job released", "job", sid,
                "kind", jobs[i].kind, NULL);
    }

    return rc;
}


/*
 * After a lost connection, when the worker holds no batch: jobs still
 * running under its name are those whose outcome could not be written, or
 * that a statement given up on claimed after all. Queued again now rather
 * than when their lease passes.
 */
int
chw_jobs_requeue(PGconn *conn, const char *me)
{
    PGresult    *res;
    const char  *params[1];

    params[0] = me;

    res = chw_pg_exec(conn, chw_jobs_requeue_sql, 1, params);

    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        chw_pg_log_error(conn, res, "cannot queue our jobs again", NULL,
                         NULL);
        PQclear(res);
        return CHW_ERROR;
    }

    if (strcmp(PQcmdTuples(res), "0") != 0) {
        chw_log(CHW_LOG_INFO, "jobs of the lost connection queued again",
                "jobs", PQcmdTuples(res), NULL);
    }

    PQclear(res);

    return CHW_OK;
}


/*
 * How many jobs are queued or running, and in how many seconds the next
 * one is due (a queued job's run_at, a running job's lease end).
 */
int
chw_jobs_next(PGconn *conn, double *wait, long long *pending)
{
    PGresult  *res;

    res = chw_pg_exec(conn, chw_jobs_next_sql, 0, NULL);

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        chw_pg_log_error(conn, res, "cannot read the queue", NULL, NULL);
        PQclear(res);
        return CHW_ERROR;
    }

    *pending = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    *wait = PQgetisnull(res, 0, 1) ? -1.0 : atof(PQgetvalue(res, 0, 1));

    PQclear(res);

    return CHW_OK;
}


/* base * 2^(attempts - 1), capped, then "equal jitter": half fixed */
static double
chw_jobs_backoff(chw_config_t *cf, int attempts)
{
    double    delay;
    uint32_t  r;

    delay = cf->retry_base * pow(2.0, attempts > 1 ? attempts - 1 : 0);

    if (delay > cf->retry_max) {
        delay = cf->retry_max;
    }

    if (getrandom(&r, sizeof(r), 0) != sizeof(r)) {
        r = (uint32_t) rand();
    }

    return delay / 2 + delay / 2 * ((double) r / UINT32_MAX);
}
