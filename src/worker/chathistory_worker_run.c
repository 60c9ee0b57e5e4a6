
/*
 * The run command, the daemon: claims batches of jobs, waits for NOTIFY on
 * chathistory_jobs (or the poll interval, or the next job's due time), runs
 * the retention cleanup on its interval and logs stats. --drain exits once
 * no job is queued or running.
 *
 * Batches overlap: a batch's outcome is written (chathistory_worker_store.c)
 * while the next batch is being embedded, so the database and the embedding
 * server work at the same time. A worker that runs out of jobs NOTIFYs, so
 * that workers waiting for the running jobs to end (--drain) look again.
 */


#define _GNU_SOURCE

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "chathistory_worker.h"


/* seconds between connection attempts at most */
#define CHW_RUN_RECONNECT_MAX  30


typedef struct {
    chw_config_t     *cf;
    PGconn           *conn;
    chw_embedder_t   *embedder;
    chw_store_t       store;
    chw_batch_t      *pending;      /* embedded, its outcome not written */
    int               worked;       /* since the last NOTIFY */
    sigset_t          sigours;
    sigset_t          sigmask;
    char              me[128];
    int               drain;
    double            next_cleanup;
    double            next_stats;
    long long         done;
    long long         retried;
    long long         failed;
    long long         lost;
} chw_run_t;


static int chw_run_options(chw_run_t *run, int argc, char **argv);
static int chw_run_start(chw_run_t *run);
static int chw_run_probe(chw_run_t *run);
static int chw_run_loop(chw_run_t *run);
static int chw_run_batch(chw_run_t *run);
static void chw_run_flush(chw_run_t *run);
static void chw_run_written(chw_run_t *run, chw_batch_t *b);
static void chw_run_notify(chw_run_t *run);
static int chw_run_idle(chw_run_t *run);
static int chw_run_wait(chw_run_t *run, double seconds);
static void chw_run_reconnect(chw_run_t *run);
static void chw_run_timers(chw_run_t *run);
static void chw_run_stats(chw_run_t *run);
static void chw_run_stop(chw_run_t *run);


int
chw_run(chw_config_t *cf, int argc, char **argv)
{
    int        rc;
    chw_run_t  run;

    memset(&run, 0, sizeof(chw_run_t));
    run.cf = cf;

    rc = chw_run_options(&run, argc, argv);
    if (rc != CHW_EXIT_OK) {
        return rc;
    }

    if (chw_log_reopen(cf) != CHW_OK
        || chw_signals_init(&run.sigours, &run.sigmask) != CHW_OK)
    {
        return CHW_EXIT_FAILURE;
    }

    rc = chw_run_start(&run);

    if (rc == CHW_OK) {
        rc = chw_run_loop(&run);
    }

    chw_run_stop(&run);

    /* a start-up cut short by SIGTERM (waiting for the database) is a stop */
    return rc == CHW_OK || chw_stop ? CHW_EXIT_OK : CHW_EXIT_FAILURE;
}


static int
chw_run_options(chw_run_t *run, int argc, char **argv)
{
    int  i;

    for (i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--drain") == 0) {
            run->drain = 1;

        } else {
            fprintf(stderr, CHW_NAME " run: unknown option \"%s\"\n",
                    argv[i]);
            return CHW_EXIT_USAGE;
        }
    }

    if (run->cf->database_url == NULL) {
        fprintf(stderr, CHW_NAME " run: database_url is not set "
                "(--database-url or CHATHISTORY_DATABASE_URL)\n");
        return CHW_EXIT_USAGE;
    }

    return CHW_EXIT_OK;
}


/* connects, LISTENs, opens the embedder and checks its dimension */
static int
chw_run_start(chw_run_t *run)
{
    char  host[64];

    if (gethostname(host, sizeof(host)) != 0) {
        strcpy(host, "localhost");
    }

    host[sizeof(host) - 1] = '\0';
    snprintf(run->me, sizeof(run->me), "%s:%ld", host, (long) getpid());

    chw_log(CHW_LOG_INFO, "worker starting", "worker", run->me,
            "version", CHW_VERSION, NULL);

    if (run->cf->job_lease <= run->cf->embedding_timeout) {
        chw_log(CHW_LOG_WARN, "job_lease should exceed embedding_timeout, "
                "or slow batches are taken over while still running", NULL);
    }

    if (run->cf->audio_storage_path == NULL) {
        chw_log(CHW_LOG_WARN, "audio_storage_path is not set: delete_audio "
                "jobs and the audio sweep do nothing", NULL);
    }

    run->conn = chw_pg_connect(run->cf, 1);
    if (run->conn == NULL) {
        return CHW_ERROR;
    }

    if (chw_pg_command(run->conn, "LISTEN " CHW_LISTEN_CHANNEL, 0, NULL)
        != CHW_OK)
    {
        return CHW_ERROR;
    }

    run->embedder = chw_embed_open(run->cf, run->conn);
    if (run->embedder == NULL) {
        return CHW_ERROR;
    }

    if (chw_store_init(&run->store, run->conn, run->me, run->cf,
                       run->embedder)
        != CHW_OK)
    {
        return CHW_ERROR;
    }

    return chw_run_probe(run);
}


/*
 * Embeds a probe text: a vector of the wrong dimension stops the start-up.
 * An unreachable server does not: cleanup and audio deletion go on, and
 * embedding jobs are retried (and their vectors checked) until it answers.
 */
static int
chw_run_probe(chw_run_t *run)
{
    int          rc;
    char         err[256];
    float       *v;
    const char  *probe;

    v = malloc((size_t) chw_embed_dim(run->embedder) * sizeof(float));
    if (v == NULL) {
        chw_log(CHW_LOG_ERROR, "out of memory", NULL);
        return CHW_ERROR;
    }

    probe = "dimension probe";

    rc = chw_embed_documents(run->embedder, &probe, 1, v, err, sizeof(err));
    free(v);

    if (rc == CHW_OK || rc == CHW_ABORTED) {
        return rc == CHW_OK ? CHW_OK : CHW_ERROR;
    }

    if (strstr(err, "dimensions") != NULL) {
        chw_log(CHW_LOG_ERROR, "the embedding model does not fit "
                "messages.embedding", "model",
                chw_embed_model(run->embedder), "error", err, NULL);
        return CHW_ERROR;
    }

    chw_log(CHW_LOG_WARN, "embedding server not ready; embedding jobs will "
            "be retried", "error", err, NULL);

    return CHW_OK;
}


static int
chw_run_loop(chw_run_t *run)
{
    int  n;

    run->next_cleanup = run->cf->cleanup_interval > 0 ? chw_now() : HUGE_VAL;
    run->next_stats = run->cf->stats_interval > 0
                      ? chw_now() + run->cf->stats_interval : HUGE_VAL;

    while (!chw_stop) {
        chw_run_timers(run);

        n = chw_run_batch(run);

        if (n == CHW_ERROR) {
            if (run->drain) {
                return CHW_ERROR;
            }

            if (PQstatus(run->conn) != CONNECTION_OK) {
                chw_run_reconnect(run);
                continue;
            }

            chw_run_wait(run, run->cf->poll_interval);
            continue;
        }

        if (n < (int) run->cf->batch_size) {
            chw_run_flush(run);
            chw_run_notify(run);

            if (chw_run_idle(run) != CHW_OK) {
                break;
            }
        }
    }

    /* SIGTERM: the batch in hand is finished, not dropped */
    chw_run_flush(run);
    chw_run_stats(run);

    return CHW_OK;
}


/*
 * Claims a batch and reads its texts, sends the previous batch's outcome,
 * embeds the new one meanwhile, then reads the answer to the previous one;
 * the new batch waits for the next call (or chw_run_flush()). The number of
 * jobs claimed, or CHW_ERROR.
 */
static int
chw_run_batch(chw_run_t *run)
{
    int           n, sent;
    chw_batch_t  *b;

    b = calloc(1, sizeof(chw_batch_t));
    if (b == NULL) {
        chw_log(CHW_LOG_ERROR, "out of memory", NULL);
        chw_run_flush(run);
        return CHW_ERROR;
    }

    n = chw_jobs_claim(run->conn, run->me, run->cf->job_lease,
                       (int) run->cf->batch_size, b);

    if (n <= 0) {
        chw_batch_free(b);
        chw_run_flush(run);
        return n;
    }

    chw_process_read(run->conn, b);

    sent = 0;

    if (run->pending != NULL) {
        sent = chw_store_send(&run->store, run->pending) == CHW_OK;
    }

    chw_process_batch(run->cf, run->embedder, b);

    if (run->pending != NULL) {
        if (sent) {
            chw_store_collect(&run->store);
        }

        chw_run_written(run, run->pending);
    }

    run->pending = b;
    run->worked = 1;

    return n;
}


/* writes the pending batch's outcome and waits for it */
static void
chw_run_flush(chw_run_t *run)
{
    if (run->pending == NULL) {
        return;
    }

    if (chw_store_send(&run->store, run->pending) == CHW_OK) {
        chw_store_collect(&run->store);
    }

    chw_run_written(run, run->pending);
}


/* counts a written batch's outcomes and frees it */
static void
chw_run_written(chw_run_t *run, chw_batch_t *b)
{
    int  i;

    for (i = 0; i < b->n; i++) {
        if (b->jobs[i].rc == CHW_ABORTED) {
            continue;
        }

        switch (b->jobs[i].outcome) {
        case CHW_JOB_DONE:
            run->done++;
            break;
        case CHW_JOB_RETRY:
            run->retried++;
            break;
        case CHW_JOB_FAILED:
            run->failed++;
            break;
        default:
            run->lost++;
        }
    }

    if (run->pending == b) {
        run->pending = NULL;
    }

    chw_batch_free(b);
}


/*
 * Out of jobs after doing some: wakes the workers that wait for running
 * jobs to end (--drain counts them as pending), ours included, which costs
 * one more look at the queue.
 */
static void
chw_run_notify(chw_run_t *run)
{
    if (!run->worked) {
        return;
    }

    run->worked = 0;

    chw_pg_command(run->conn, "SELECT pg_notify('" CHW_LISTEN_CHANNEL
                   "', 'idle')", 0, NULL);
}


/*
 * Nothing due now: with --drain, exits when the queue is empty; otherwise
 * waits for a NOTIFY, the next due job, a timer or the poll interval.
 */
static int
chw_run_idle(chw_run_t *run)
{
    double     wait, t;
    long long  pending;

    if (chw_jobs_next(run->conn, &wait, &pending) != CHW_OK) {
        return chw_run_wait(run, run->cf->poll_interval);
    }

    if (run->drain && pending == 0) {
        chw_log(CHW_LOG_INFO, "queue drained", NULL);
        return CHW_DECLINED;
    }

    if (wait < 0 || wait > run->cf->poll_interval) {
        wait = run->cf->poll_interval;
    }

    t = chw_now();

    if (run->next_cleanup - t < wait) {
        wait = run->next_cleanup - t;
    }

    if (run->next_stats - t < wait) {
        wait = run->next_stats - t;
    }

    return chw_run_wait(run, wait > 0.005 ? wait : 0.005);
}


/* ppoll() on the connection's socket with the signals let in */
static int
chw_run_wait(chw_run_t *run, double seconds)
{
    int              n, err, woken;
    PGnotify        *note;
    struct pollfd    pfd;
    struct timespec  ts;

    err = 0;
    sigprocmask(SIG_BLOCK, &run->sigours, NULL);

    /* NOTIFYs read along with other answers: the socket stays quiet */
    woken = 0;

    while ((note = PQnotifies(run->conn)) != NULL) {
        PQfreemem(note);
        woken = 1;
    }

    if (woken || chw_stop || chw_reopen) {
        n = 0;

    } else {
        /* a connection being made again may leave a dead socket behind,
         * readable at once: the wait between attempts is a plain sleep */
        pfd.fd = PQstatus(run->conn) == CONNECTION_OK ? PQsocket(run->conn)
                                                       : -1;
        pfd.events = POLLIN;
        ts.tv_sec = (time_t) seconds;
        ts.tv_nsec = (long) ((seconds - (double) ts.tv_sec) * 1e9);

        n = ppoll(&pfd, pfd.fd >= 0 ? 1 : 0, &ts, &run->sigmask);
        err = errno;
    }

    sigprocmask(SIG_SETMASK, &run->sigmask, NULL);

    if (n == -1 && err != EINTR) {
        chw_log(CHW_LOG_ERROR, "ppoll() failed", "error", strerror(err),
                NULL);
        return CHW_ERROR;
    }

    if (chw_reopen) {
        chw_reopen = 0;
        chw_log_reopen(run->cf);
        chw_log(CHW_LOG_INFO, "log reopened", NULL);
    }

    if (n > 0 && PQconsumeInput(run->conn) == 1) {
        while ((note = PQnotifies(run->conn)) != NULL) {
            PQfreemem(note);
        }
    }

    return CHW_OK;
}


/*
 * The connection was lost, or given up on when the database did not
 * answer, and the batches in hand are written off: connects again, LISTENs
 * and queues our running jobs again, at once, then after 1, 2, 4 ... up
 * to CHW_RUN_RECONNECT_MAX seconds, half of each delay random, so that
 * workers do not all come back at the same instant. Returns when connected
 * or stopped.
 */
static void
chw_run_reconnect(chw_run_t *run)
{
    char      in[32];
    double    delay, wait;
    uint32_t  r;

    chw_log(CHW_LOG_WARN, "lost the PostgreSQL connection, reconnecting",
            "error", chw_pg_error(run->conn, NULL), NULL);

    delay = 1;

    while (!chw_stop) {
        if (chw_pg_reset(run->conn) == CHW_OK
            && chw_pg_command(run->conn, "LISTEN " CHW_LISTEN_CHANNEL, 0,
                              NULL) == CHW_OK
            && chw_jobs_requeue(run->conn, run->me) == CHW_OK)
        {
            return;
        }

        if (getrandom(&r, sizeof(r), 0) != sizeof(r)) {
            r = (uint32_t) rand();
        }

        wait = delay / 2 + delay / 2 * ((double) r / UINT32_MAX);
        snprintf(in, sizeof(in), "%.1f", wait);
        chw_log(CHW_LOG_INFO, "next connection attempt", "in", in, NULL);

        chw_run_wait(run, wait);

        delay = delay * 2 < CHW_RUN_RECONNECT_MAX ? delay * 2
                                                  : CHW_RUN_RECONNECT_MAX;
    }
}


static void
chw_run_timers(chw_run_t *run)
{
    double  t;

    t = chw_now();

    if (t >= run->next_cleanup) {
        chw_retention_run(run->conn, run->cf);
        run->next_cleanup = chw_now() + run->cf->cleanup_interval;
    }

    if (t >= run->next_stats) {
        chw_run_stats(run);
        run->next_stats = t + run->cf->stats_interval;
    }
}


/* counters since start, queue depth and the lag of the oldest due job */
static void
chw_run_stats(chw_run_t *run)
{
    char       done[24], retried[24], failed[24], lost[24];
    PGresult  *res;

    res = chw_pg_exec(run->conn, "SELECT count(*) FILTER "
              "(WHERE status = 'queued'),"
              " count(*) FILTER (WHERE status = 'running'),"
              " coalesce(round(extract(epoch FROM now() - min(run_at) "
              "FILTER (WHERE status = 'queued' AND run_at <= now())) "
              "* 1000), 0) FROM jobs WHERE status IN ('queued', 'running')",
              0, NULL);

    snprintf(done, sizeof(done), "%lld", run->done);
    snprintf(retried, sizeof(retried), "%lld", run->retried);
    snprintf(failed, sizeof(failed), "%lld", run->failed);
    snprintf(lost, sizeof(lost), "%lld", run->lost);

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        chw_pg_log_error(run->conn, res, "cannot read the queue", NULL,
                         NULL);
        PQclear(res);
        res = NULL;
    }

    chw_log(CHW_LOG_INFO, "stats", "worker", run->me, "done", done,
            "retried", retried, "failed", failed, "lost", lost,
            "queued", res ? PQgetvalue(res, 0, 0) : NULL,
            "running", res ? PQgetvalue(res, 0, 1) : NULL,
            "lag_ms", res ? PQgetvalue(res, 0, 2) : NULL, NULL);

    PQclear(res);
}


static void
chw_run_stop(chw_run_t *run)
{
    chw_batch_free(run->pending);
    chw_embed_close(run->embedder);

    if (run->conn != NULL) {
        PQfinish(run->conn);
    }

    chw_log(CHW_LOG_INFO, "worker stopped", "worker", run->me, NULL);
}
