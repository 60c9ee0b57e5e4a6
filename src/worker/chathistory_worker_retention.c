
/*
 * Retention: under an advisory lock, one worker at a time deletes expired
 * sessions (their messages go by cascade) and their audio directories,
 * sweeps audio directories whose session is gone, and forgets old done jobs.
 */


#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "chathistory_worker.h"


#define CHW_RETENTION_BATCH  500


typedef struct {
    long long   sessions;
    long long   messages;
    long long   orphans;
    long long   jobs;
    long        files;
} chw_retention_t;


static int chw_retention_lock(PGconn *conn, const char *fn);
static int chw_retention_sessions(PGconn *conn, chw_config_t *cf,
    chw_retention_t *r);
static int chw_retention_sweep(PGconn *conn, chw_config_t *cf,
    chw_retention_t *r);
static int chw_retention_sweep_batch(PGconn *conn, chw_config_t *cf,
    char (*names)[CHW_UUID_LEN + 1], int n, chw_retention_t *r);
static int chw_retention_is_orphan(int dirfd, const char *name, double age);
static int chw_retention_jobs(PGconn *conn, chw_config_t *cf,
    chw_retention_t *r);
static void chw_retention_log(chw_retention_t *r, const char *ms);


static const char  chw_retention_delete_sql[] =
    "WITH d AS (DELETE FROM sessions WHERE id IN (SELECT id FROM sessions "
    "WHERE expires_at < now() ORDER BY expires_at LIMIT $1 "
    "FOR UPDATE SKIP LOCKED) RETURNING id) "
    "SELECT d.id, (SELECT count(*) FROM messages m "
    "WHERE m.session_id = d.id) FROM d";

static const char  chw_retention_alive_sql[] =
    "SELECT id FROM sessions WHERE id = ANY($1::uuid[])";

static const char  chw_retention_jobs_sql[] =
    "DELETE FROM jobs WHERE status = 'done' "
    "AND updated_at < now() - make_interval(days => $1::int)";


/* one pass; CHW_OK also when another worker holds the lock */
int
chw_retention_run(PGconn *conn, chw_config_t *cf)
{
    int              rc;
    char             sms[32];
    struct timespec  t0, t1;
    chw_retention_t  r;

    rc = chw_retention_lock(conn, "pg_try_advisory_lock");
    if (rc != CHW_OK) {
        return rc == CHW_DECLINED ? CHW_OK : CHW_ERROR;
    }

    memset(&r, 0, sizeof(chw_retention_t));
    clock_gettime(CLOCK_MONOTONIC, &t0);

    rc = chw_retention_sessions(conn, cf, &r);

    if (rc == CHW_OK) {
        rc = chw_retention_sweep(conn, cf, &r);
    }

    if (rc == CHW_OK) {
        rc = chw_retention_jobs(conn, cf, &r);
    }

    clock_gettime(CLOCK_MONOTONIC, &t1);
    snprintf(sms, sizeof(sms), "%ld", (long) ((t1.tv_sec - t0.tv_sec) * 1000
             + (t1.tv_nsec - t0.tv_nsec) / 1000000));

    chw_retention_log(&r, sms);

    if (chw_retention_lock(conn, "pg_advisory_unlock") == CHW_ERROR) {
        rc = CHW_ERROR;
    }

    return rc;
}


/* CHW_DECLINED: pg_try_advisory_lock() found it taken */
static int
chw_retention_lock(PGconn *conn, const char *fn)
{
    char  sql[96], *v;
    int   got;

    snprintf(sql, sizeof(sql), "SELECT %s(%" PRId64 ")", fn,
             CHW_LOCK_CLEANUP);

    v = chw_pg_value(conn, sql, 0, NULL);
    if (v == NULL) {
        return CHW_ERROR;
    }

    got = (strcmp(v, "t") == 0);
    free(v);

    if (!got && strcmp(fn, "pg_try_advisory_lock") == 0) {
        chw_log(CHW_LOG_INFO, "cleanup skipped: another worker is at it",
                NULL);
        return CHW_DECLINED;
    }

    return CHW_OK;
}


static int
chw_retention_sessions(PGconn *conn, chw_config_t *cf, chw_retention_t *r)
{
    int          i, n;
    char         limit[16];
    PGresult    *res;
    const char  *params[1];

    snprintf(limit, sizeof(limit), "%d", CHW_RETENTION_BATCH);
    params[0] = limit;

    do {
        res = chw_pg_exec(conn, chw_retention_delete_sql, 1, params);

        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            chw_pg_log_error(conn, res, "cannot delete expired sessions",
                             NULL, NULL);
            PQclear(res);
            return CHW_ERROR;
        }

        n = PQntuples(res);

        for (i = 0; i < n; i++) {
            r->sessions++;
            r->messages += strtoll(PQgetvalue(res, i, 1), NULL, 10);

            if (cf->audio_storage_path != NULL) {
                chw_audio_remove(cf->audio_storage_path,
                                 PQgetvalue(res, i, 0), &r->files);
            }
        }

        PQclear(res);

    } while (n == CHW_RETENTION_BATCH && !chw_stop);

    return CHW_OK;
}


/* UUID-named directories older than orphan_age with no session row */
static int
chw_retention_sweep(PGconn *conn, chw_config_t *cf, chw_retention_t *r)
{
    int             n, rc;
    DIR            *d;
    struct dirent  *de;
    char          (*names)[CHW_UUID_LEN + 1];

    if (cf->audio_storage_path == NULL) {
        return CHW_OK;
    }

    d = opendir(cf->audio_storage_path);
    if (d == NULL) {
        if (errno == ENOENT) {
            return CHW_OK;
        }

        chw_log(CHW_LOG_ERROR, "cannot open audio_storage_path",
                "path", cf->audio_storage_path, "error", strerror(errno),
                NULL);
        return CHW_ERROR;
    }

    names = malloc(CHW_RETENTION_BATCH * sizeof(*names));
    if (names == NULL) {
        closedir(d);
        chw_log(CHW_LOG_ERROR, "out of memory", NULL);
        return CHW_ERROR;
    }

    n = 0;
    rc = CHW_OK;

    while (rc == CHW_OK && (de = readdir(d)) != NULL) {
        if (!chw_uuid_valid(de->d_name)
            || !chw_retention_is_orphan(dirfd(d), de->d_name, cf->orphan_age))
        {
            continue;
        }

        memcpy(names[n++], de->d_name, CHW_UUID_LEN + 1);

        if (n == CHW_RETENTION_BATCH) {
            rc = chw_retention_sweep_batch(conn, cf, names, n, r);
            n = 0;
        }
    }

    if (rc == CHW_OK && n > 0) {
        rc = chw_retention_sweep_batch(conn, cf, names, n, r);
    }

    free(names);
    closedir(d);

    return rc;
}


/* a directory (not a symlink) last changed more than age seconds ago */
static int
chw_retention_is_orphan(int dirfd, const char *name, double age)
{
    struct stat  st;

    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0
        || !S_ISDIR(st.st_mode))
    {
        return 0;
    }

    return difftime(time(NULL), st.st_mtime) >= age;
}


static int
chw_retention_sweep_batch(PGconn *conn, chw_config_t *cf,
    char (*names)[CHW_UUID_LEN + 1], int n, chw_retention_t *r)
{
    int          i, k, alive;
    char        *array, *p;
    PGresult    *res;
    const char  *params[1];

    array = malloc((size_t) n * (CHW_UUID_LEN + 1) + 3);
    if (array == NULL) {
        chw_log(CHW_LOG_ERROR, "out of memory", NULL);
        return CHW_ERROR;
    }

    p = array;
    *p++ = '{';

    for (i = 0; i < n; i++) {
        p += sprintf(p, "%s%s", i ? "," : "", names[i]);
    }

    strcpy(p, "}");
    params[0] = array;

    res = chw_pg_exec(conn, chw_retention_alive_sql, 1, params);
    free(array);

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        chw_pg_log_error(conn, res, "cannot look up sessions", NULL, NULL);
        PQclear(res);
        return CHW_ERROR;
    }

    for (i = 0; i < n; i++) {
        for (k = 0, alive = 0; k < PQntuples(res) && !alive; k++) {
            alive = strcasecmp(PQgetvalue(res, k, 0), names[i]) == 0;
        }

        if (!alive
            && chw_audio_remove(cf->audio_storage_path, names[i], &r->files)
               == CHW_OK)
        {
            r->orphans++;
        }
    }

    PQclear(res);

    return CHW_OK;
}


static int
chw_retention_jobs(PGconn *conn, chw_config_t *cf, chw_retention_t *r)
{
    char         days[16];
    PGresult    *res;
    const char  *params[1];

    snprintf(days, sizeof(days), "%d", (int) cf->jobs_keep_days);
    params[0] = days;

    res = chw_pg_exec(conn, chw_retention_jobs_sql, 1, params);

    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        chw_pg_log_error(conn, res, "cannot delete old jobs", NULL, NULL);
        PQclear(res);
        return CHW_ERROR;
    }

    r->jobs = strtoll(PQcmdTuples(res), NULL, 10);
    PQclear(res);

    return CHW_OK;
}


static void
chw_retention_log(chw_retention_t *r, const char *ms)
{
    char  s[24], m[24], o[24], f[24], j[24];

    snprintf(s, sizeof(s), "%lld", r->sessions);
    snprintf(m, sizeof(m), "%lld", r->messages);
    snprintf(o, sizeof(o), "%lld", r->orphans);
    snprintf(f, sizeof(f), "%ld", r->files);
    snprintf(j, sizeof(j), "%lld", r->jobs);

    chw_log(CHW_LOG_INFO, "cleanup done", "sessions", s, "messages", m,
            "orphan_dirs", o, "files", f, "jobs", j, "ms", ms, NULL);
}


/* the cleanup command: one pass now, for cron (--once) */
int
chw_cleanup(chw_config_t *cf, int argc, char **argv)
{
    int      i, rc;
    PGconn  *conn;

    for (i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--once") != 0) {
            fprintf(stderr, CHW_NAME " cleanup: unknown option \"%s\"\n",
                    argv[i]);
            return CHW_EXIT_USAGE;
        }
    }

    conn = chw_admin_connect(cf, "cleanup");
    if (conn == NULL) {
        return cf->database_url == NULL ? CHW_EXIT_USAGE : CHW_EXIT_FAILURE;
    }

    rc = chw_retention_run(conn, cf);
    PQfinish(conn);

    return rc == CHW_OK ? CHW_EXIT_OK : CHW_EXIT_FAILURE;
}
