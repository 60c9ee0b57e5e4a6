
/*
 * chathistory-worker: the companion daemon of ngx_http_chathistory_module.
 * Types and functions shared by its commands.
 */


#ifndef _CHATHISTORY_WORKER_H_INCLUDED_
#define _CHATHISTORY_WORKER_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>

#include <libpq-fe.h>


#define CHW_VERSION            "0.1.0"
#define CHW_NAME               "chathistory-worker"

#define CHW_OK                 0
#define CHW_ERROR              -1

/* exit statuses */
#define CHW_EXIT_OK            0
#define CHW_EXIT_FAILURE       1
#define CHW_EXIT_USAGE         2

/*
 * Session-level advisory lock keys (pg_advisory_lock), one per kind of work
 * that only one process at a time may do; the bytes spell "chathmig".
 */
#define CHW_LOCK_MIGRATE       INT64_C(0x63686174686d6967)
/* "chathcln": retention cleanup */
#define CHW_LOCK_CLEANUP       INT64_C(0x6368617468636c6e)

/* a job or an HTTP call stopped by a second SIGTERM */
#define CHW_ABORTED            -2
#define CHW_DECLINED           -3

#define CHW_UUID_LEN           36
/* characters in an organization's or a key's name */
#define CHW_NAME_MAX           200
#define CHW_LISTEN_CHANNEL     "chathistory_jobs"

#define CHW_DEFAULT_MIGRATIONS_DIR   "migrations"
#define CHW_SYSTEM_MIGRATIONS_DIR    "/usr/share/chathistory/migrations"


typedef enum {
    CHW_LOG_INFO = 0,
    CHW_LOG_WARN,
    CHW_LOG_ERROR
} chw_log_level_e;


/* the settings; every one a string, NULL when unset */
typedef struct {
    const char  *database_url;
    const char  *migrations_dir;
    const char  *audio_storage_path;
    const char  *embedding_provider;
    const char  *embedding_model;
    const char  *embedding_url;
    const char  *log_file;

    /* numbers, given as strings and checked by chw_config_parse() */
    const char  *database_timeout_s;
    const char  *embedding_max_chars_s;
    const char  *embedding_timeout_s;
    const char  *batch_size_s;
    const char  *job_lease_s;
    const char  *poll_interval_s;
    const char  *retry_base_s;
    const char  *retry_max_s;
    const char  *cleanup_interval_s;
    const char  *stats_interval_s;
    const char  *jobs_keep_days_s;
    const char  *orphan_age_s;

    double       database_timeout;      /* seconds, 0: no bound */
    double       embedding_max_chars;
    double       embedding_timeout;     /* seconds */
    double       batch_size;
    double       job_lease;             /* seconds */
    double       poll_interval;         /* seconds */
    double       retry_base;            /* seconds */
    double       retry_max;             /* seconds */
    double       cleanup_interval;      /* seconds, 0: never */
    double       stats_interval;        /* seconds, 0: never */
    double       jobs_keep_days;
    double       orphan_age;            /* seconds */
} chw_config_t;


/* an embedding provider, ready to use: see chathistory_worker_embed.c */
typedef struct chw_embedder_s  chw_embedder_t;

/* a claimed job */
typedef struct {
    long long     id;
    const char   *kind;
    const char   *payload;
    int           attempts;
    int           max_attempts;
    int           rc;            /* CHW_OK, CHW_ERROR, CHW_ABORTED */
    int           outcome;       /* set when its end is written */
    char          error[256];

    /* embed_message: the message, its text to embed, then its vector */
    char          message_id[CHW_UUID_LEN + 1];
    const char   *text;          /* NULL: not to be embedded (or gone) */
    const float  *vec;           /* NULL: nothing to store */
} chw_job_t;


/* a claimed batch, from the claim until its outcome is written */
typedef struct {
    PGresult     *claimed;       /* the jobs' rows, which jobs[] point into */
    PGresult     *messages;      /* the texts, which jobs[].text point into */
    chw_job_t    *jobs;
    int           n;
    float        *vecs;          /* the embeddings jobs[].vec point into */
} chw_batch_t;


/* writes batches' outcomes: see chathistory_worker_store.c */
typedef struct {
    PGconn       *conn;
    const char   *me;
    const char   *model;
    chw_config_t *cf;
    int           dim;
    Oid           vector_oid;    /* of messages.embedding: binary arrays */
    chw_batch_t  *sent;          /* its statement sent, the answer unread */
} chw_store_t;


typedef enum {
    CHW_JOB_DONE = 0,
    CHW_JOB_RETRY,
    CHW_JOB_FAILED,
    CHW_JOB_LOST               /* our lease had passed: another has it */
} chw_job_outcome_e;


/* a command: its arguments are what the settings parser left over */
typedef struct {
    const char  *name;
    int        (*run)(chw_config_t *cf, int argc, char **argv);
    const char  *summary;
} chw_command_t;


/* chathistory_worker_config.c */
int chw_config_parse(chw_config_t *cf, int argc, char **argv, int *nrest);
void chw_config_usage(FILE *out);

/* chathistory_worker_log.c: key, value, ..., NULL; NULL values are skipped */
void chw_log(chw_log_level_e level, const char *msg, ...)
    __attribute__((sentinel));

/* chathistory_worker_pg.c */
PGconn *chw_pg_connect(chw_config_t *cf, int bounded);
double chw_now(void);                          /* monotonic seconds */
int chw_pg_reset(PGconn *conn);
int chw_pg_send(PGconn *conn, const char *sql, int nparams,
    const char *const *values, const int *lengths, const int *formats);
PGresult *chw_pg_result(PGconn *conn);
PGresult *chw_pg_exec(PGconn *conn, const char *sql, int nparams,
    const char *const *params);
PGresult *chw_pg_exec_script(PGconn *conn, const char *sql);
const char *chw_pg_error(PGconn *conn, PGresult *res);
int chw_pg_command(PGconn *conn, const char *sql, int nparams,
    const char *const *params);
void chw_pg_log_error(PGconn *conn, PGresult *res, const char *msg,
    const char *key, const char *value);

/* chathistory_worker_migrate.c */
int chw_migrate(chw_config_t *cf, int argc, char **argv);

char *chw_pg_value(PGconn *conn, const char *sql, int nparams,
    const char *const *params);

/* chathistory_worker_signal.c: flags the handlers set, the loop reads */
extern volatile sig_atomic_t  chw_stop;        /* SIGTERM, SIGINT */
extern volatile sig_atomic_t  chw_stop_now;    /* the second one */
extern volatile sig_atomic_t  chw_reopen;      /* SIGHUP */
extern volatile sig_atomic_t  chw_signal_gen;  /* counts every signal */
int chw_signals_init(sigset_t *ours, sigset_t *unblocked);
int chw_signal_poll(struct pollfd *pfd, nfds_t n, double seconds, int gen);
int chw_log_reopen(chw_config_t *cf);

/* chathistory_worker_jobs.c */
int chw_jobs_claim(PGconn *conn, const char *me, double lease, int limit,
    chw_batch_t *b);
int chw_jobs_finish(PGconn *conn, const char *me, chw_config_t *cf,
    chw_job_t *job);
int chw_jobs_release(PGconn *conn, const char *me, chw_job_t *jobs, int n);
int chw_jobs_next(PGconn *conn, double *wait, long long *pending);
int chw_jobs_requeue(PGconn *conn, const char *me);
void chw_jobs_log_done(chw_job_t *job);
void chw_jobs_log_lost(chw_job_t *job);
void chw_batch_free(chw_batch_t *b);

/* chathistory_worker_process.c */
void chw_process_read(PGconn *conn, chw_batch_t *b);
void chw_process_batch(chw_config_t *cf, chw_embedder_t *e, chw_batch_t *b);

/* chathistory_worker_store.c */
int chw_store_init(chw_store_t *st, PGconn *conn, const char *me,
    chw_config_t *cf, chw_embedder_t *e);
int chw_store_send(chw_store_t *st, chw_batch_t *b);
int chw_store_collect(chw_store_t *st);

/* chathistory_worker_embed.c */
chw_embedder_t *chw_embed_open(chw_config_t *cf, PGconn *conn);
void chw_embed_close(chw_embedder_t *e);
const char *chw_embed_model(chw_embedder_t *e);
int chw_embed_documents(chw_embedder_t *e, const char **texts, size_t n,
    float *out, char *err, size_t errlen);
int chw_embed_dim(chw_embedder_t *e);

/* chathistory_worker_audio.c */
int chw_uuid_valid(const char *s);
int chw_audio_remove(const char *root, const char *session_id,
    long *files);

/* chathistory_worker_retention.c */
int chw_retention_run(PGconn *conn, chw_config_t *cf);
int chw_cleanup(chw_config_t *cf, int argc, char **argv);

/* chathistory_worker_run.c */
int chw_run(chw_config_t *cf, int argc, char **argv);

/* chathistory_worker_reembed.c */
int chw_reembed(chw_config_t *cf, int argc, char **argv);

/* chathistory_worker_admin_org.c, chathistory_worker_admin_apikey.c */
int chw_admin_org(chw_config_t *cf, int argc, char **argv);
int chw_admin_apikey(chw_config_t *cf, int argc, char **argv);
PGconn *chw_admin_connect(chw_config_t *cf, const char *command);

/* an administrative subcommand, run on a connection of its own */
typedef struct {
    const char  *name;
    int        (*handler)(PGconn *conn, int argc, char **argv);
} chw_admin_cmd_t;

int chw_admin_name(const char *command, const char *what, const char *name);
int chw_admin_dispatch(chw_config_t *cf, int argc, char **argv,
    const char *command, const chw_admin_cmd_t *cmds, const char *usage);

/* chathistory_worker.c */
void chw_usage(FILE *out);


#endif /* _CHATHISTORY_WORKER_H_INCLUDED_ */
