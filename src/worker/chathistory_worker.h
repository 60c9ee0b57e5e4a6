
/*
 * chathistory-worker: the companion daemon of ngx_http_chathistory_module.
 * Types and functions shared by its commands.
 */


#ifndef _CHATHISTORY_WORKER_H_INCLUDED_
#define _CHATHISTORY_WORKER_H_INCLUDED_


#include <stddef.h>
#include <stdint.h>
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
} chw_config_t;


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
PGconn *chw_pg_connect(chw_config_t *cf);
int chw_pg_command(PGconn *conn, const char *sql, int nparams,
    const char *const *params);
void chw_pg_log_error(PGconn *conn, PGresult *res, const char *msg,
    const char *key, const char *value);

/* chathistory_worker_migrate.c */
int chw_migrate(chw_config_t *cf, int argc, char **argv);

/* chathistory_worker.c */
void chw_usage(FILE *out);


#endif /* _CHATHISTORY_WORKER_H_INCLUDED_ */
