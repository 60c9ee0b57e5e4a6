
/*
 * The migrate command: applies migrations/NNNN_name.sql in order, each in
 * its own transaction, and records them in schema_migrations. An advisory
 * lock makes concurrent migrators take turns.
 */


#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "chathistory_worker.h"


#define CHW_MIGRATION_DIGITS  4
/* ms between tries of the migration lock while another migrator has it */
#define CHW_MIGRATE_LOCK_POLL 200


typedef struct {
    char             *file;
    char              version[CHW_MIGRATION_DIGITS + 1];
    char             *applied_at;       /* NULL while pending */
} chw_migration_t;


typedef struct {
    const char       *dir;
    chw_migration_t  *elts;
    size_t            nelts;
    size_t            nalloc;
} chw_migrations_t;


static const char *chw_migrate_dir(chw_config_t *cf);
static int chw_migrate_list(chw_migrations_t *ms);
static int chw_migrate_is_file(const char *name);
static int chw_migrate_add(chw_migrations_t *ms, const char *name);
static int chw_migrate_cmp(const void *one, const void *two);
static int chw_migrate_check(chw_migrations_t *ms);
static void chw_migrate_free(chw_migrations_t *ms);
static int chw_migrate_run(PGconn *conn, chw_migrations_t *ms);
static int chw_migrate_lock(PGconn *conn, const char *key);
static int chw_migrate_pending(PGconn *conn, chw_migrations_t *ms);
static int chw_migrate_load(PGconn *conn, chw_migrations_t *ms);
static chw_migration_t *chw_migrate_find(chw_migrations_t *ms,
    const char *version);
static int chw_migrate_apply(PGconn *conn, chw_migrations_t *ms,
    chw_migration_t *m);
static int chw_migrate_exec(PGconn *conn, chw_migration_t *m,
    const char *sql);
static void chw_migrate_log_failure(PGresult *res, PGconn *conn,
    chw_migration_t *m, const char *sql);
static int chw_migrate_read(const char *dir, const char *file, char **sql);
static int chw_migrate_status(PGconn *conn, chw_migrations_t *ms);
static long chw_migrate_ms(void);


static const char  chw_migrate_table[] =
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    "version text PRIMARY KEY, "
    "applied_at timestamptz NOT NULL DEFAULT now())";

static const char  chw_migrate_applied[] =
    "SELECT version, to_char(applied_at AT TIME ZONE 'UTC', "
    "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') FROM schema_migrations "
    "ORDER BY version";


int
chw_migrate(chw_config_t *cf, int argc, char **argv)
{
    int                i, rc, status;
    PGconn            *conn;
    chw_migrations_t   ms;

    status = 0;

    for (i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--status") == 0) {
            status = 1;

        } else if (strcmp(argv[i], "--help") == 0
                   || strcmp(argv[i], "-h") == 0)
        {
            chw_usage(stdout);
            return CHW_EXIT_OK;

        } else {
            fprintf(stderr, CHW_NAME " migrate: unknown option \"%s\"\n",
                    argv[i]);
            chw_usage(stderr);
            return CHW_EXIT_USAGE;
        }
    }

    if (cf->database_url == NULL) {
        fprintf(stderr, CHW_NAME " migrate: database_url is not set "
                "(--database-url or CHATHISTORY_DATABASE_URL)\n");
        return CHW_EXIT_USAGE;
    }

    memset(&ms, 0, sizeof(chw_migrations_t));
    ms.dir = chw_migrate_dir(cf);

    if (chw_migrate_list(&ms) != CHW_OK) {
        chw_migrate_free(&ms);
        return CHW_EXIT_FAILURE;
    }

    conn = chw_pg_connect(cf, 0);
    if (conn == NULL) {
        chw_migrate_free(&ms);
        return CHW_EXIT_FAILURE;
    }

    rc = status ? chw_migrate_status(conn, &ms) : chw_migrate_run(conn, &ms);

    PQfinish(conn);
    chw_migrate_free(&ms);

    return rc == CHW_OK ? CHW_EXIT_OK : CHW_EXIT_FAILURE;
}


/* the setting, else ./migrations when there is one, else the packaged one */
static const char *
chw_migrate_dir(chw_config_t *cf)
{
    struct stat  st;

    if (cf->migrations_dir != NULL) {
        return cf->migrations_dir;
    }

    if (stat(CHW_DEFAULT_MIGRATIONS_DIR, &st) == 0 && S_ISDIR(st.st_mode)) {
        return CHW_DEFAULT_MIGRATIONS_DIR;
    }

    return CHW_SYSTEM_MIGRATIONS_DIR;
}


/* the NNNN_name.sql files of the directory, sorted by name */
static int
chw_migrate_list(chw_migrations_t *ms)
{
    DIR            *d;
    size_t          len;
    struct dirent  *de;

    d = opendir(ms->dir);
    if (d == NULL) {
        chw_log(CHW_LOG_ERROR, "cannot open the migrations directory",
                "dir", ms->dir, "error", strerror(errno), NULL);
        return CHW_ERROR;
    }

    for ( ;; ) {
        errno = 0;
        de = readdir(d);
        if (de == NULL) {
            break;
        }

        if (chw_migrate_is_file(de->d_name)) {
            if (chw_migrate_add(ms, de->d_name) != CHW_OK) {
                closedir(d);
                return CHW_ERROR;
            }

            continue;
        }

        len = strlen(de->d_name);

        if (len > 4 && strcmp(de->d_name + len - 4, ".sql") == 0) {
            chw_log(CHW_LOG_WARN, "ignoring a file not named NNNN_name.sql",
                    "dir", ms->dir, "file", de->d_name, NULL);
        }
    }

    if (errno != 0) {
        chw_log(CHW_LOG_ERROR, "cannot read the migrations directory",
                "dir", ms->dir, "error", strerror(errno), NULL);
        closedir(d);
        return CHW_ERROR;
    }

    closedir(d);

    if (ms->nelts == 0) {
        chw_log(CHW_LOG_ERROR, "no migrations found", "dir", ms->dir, NULL);
        return CHW_ERROR;
    }

    qsort(ms->elts, ms->nelts, sizeof(chw_migration_t), chw_migrate_cmp);

    return chw_migrate_check(ms);
}


/* NNNN_name.sql: four digits, an underscore, a name, ".sql" */
static int
chw_migrate_is_file(const char *name)
{
    size_t  i, len;

    len = strlen(name);

    if (len < CHW_MIGRATION_DIGITS + 1 + 1 + 4
        || strcmp(name + len - 4, ".sql") != 0
        || name[CHW_MIGRATION_DIGITS] != '_')
    {
        return 0;
    }

    for (i = 0; i < CHW_MIGRATION_DIGITS; i++) {
        if (!isdigit((unsigned char) name[i])) {
            return 0;
        }
    }

    return 1;
}


static int
chw_migrate_add(chw_migrations_t *ms, const char *name)
{
    size_t            n;
    chw_migration_t  *m;

    if (ms->nelts == ms->nalloc) {
        n = ms->nalloc ? 2 * ms->nalloc : 16;

        m = realloc(ms->elts, n * sizeof(chw_migration_t));
        if (m == NULL) {
            chw_log(CHW_LOG_ERROR, "out of memory", NULL);
            return CHW_ERROR;
        }

        ms->elts = m;
        ms->nalloc = n;
    }

    m = &ms->elts[ms->nelts];
    memset(m, 0, sizeof(chw_migration_t));

    m->file = strdup(name);
    if (m->file == NULL) {
        chw_log(CHW_LOG_ERROR, "out of memory", NULL);
        return CHW_ERROR;
    }

    memcpy(m->version, name, CHW_MIGRATION_DIGITS);
    ms->nelts++;

    return CHW_OK;
}


static int
chw_migrate_cmp(const void *one, const void *two)
{
    const chw_migration_t  *a = one, *b = two;

    return strcmp(a->file, b->file);
}


/* a version is the key in schema_migrations: two files cannot share it */
static int
chw_migrate_check(chw_migrations_t *ms)
{
    size_t  i;

    for (i = 1; i < ms->nelts; i++) {
        if (strcmp(ms->elts[i - 1].version, ms->elts[i].version) == 0) {
            chw_log(CHW_LOG_ERROR, "two migrations have the same version",
                    "dir", ms->dir, "file", ms->elts[i - 1].file,
                    "other", ms->elts[i].file, NULL);
            return CHW_ERROR;
        }
    }

    return CHW_OK;
}


static void
chw_migrate_free(chw_migrations_t *ms)
{
    size_t  i;

    for (i = 0; i < ms->nelts; i++) {
        free(ms->elts[i].file);
        free(ms->elts[i].applied_at);
    }

    free(ms->elts);
}


static int
chw_migrate_run(PGconn *conn, chw_migrations_t *ms)
{
    int           rc;
    char          key[32];
    const char   *params[1];

    /* "already exists, skipping" is not news */
    if (chw_pg_command(conn, "SET client_min_messages = warning", 0, NULL)
        != CHW_OK)
    {
        return CHW_ERROR;
    }

    snprintf(key, sizeof(key), "%" PRId64, CHW_LOCK_MIGRATE);

    if (chw_migrate_lock(conn, key) != CHW_OK) {
        return CHW_ERROR;
    }

    rc = chw_migrate_pending(conn, ms);

    params[0] = key;

    if (chw_pg_command(conn, "SELECT pg_advisory_unlock($1::bigint)", 1,
                       params)
        != CHW_OK)
    {
        return CHW_ERROR;
    }

    return rc;
}


/*
 * Waits for a concurrent migrator to finish, saying so. Not in one
 * pg_advisory_lock(), which would be a wait without bound that a silent
 * database looks the same as: a try every CHW_MIGRATE_LOCK_POLL ms, each
 * as bounded as any statement.
 */
static int
chw_migrate_lock(PGconn *conn, const char *key)
{
    int           locked, waiting;
    PGresult     *res;
    const char   *params[1];

    params[0] = key;

    for (waiting = 0; /* void */; waiting = 1) {
        res = chw_pg_exec(conn, "SELECT pg_try_advisory_lock($1::bigint)", 1,
                          params);

        if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
            chw_pg_log_error(conn, res, "cannot take the migration lock",
                             "lock", key);
            PQclear(res);
            return CHW_ERROR;
        }

        locked = (strcmp(PQgetvalue(res, 0, 0), "t") == 0);
        PQclear(res);

        if (locked) {
            return CHW_OK;
        }

        if (!waiting) {
            chw_log(CHW_LOG_INFO, "waiting for another migrator", "lock", key,
                    NULL);
        }

        (void) poll(NULL, 0, CHW_MIGRATE_LOCK_POLL);
    }
}


/* under the lock: applies every migration not yet recorded */
static int
chw_migrate_pending(PGconn *conn, chw_migrations_t *ms)
{
    char      napplied[16], took[24];
    long      start;
    size_t    i, n;

    if (chw_pg_command(conn, chw_migrate_table, 0, NULL) != CHW_OK
        || chw_migrate_load(conn, ms) != CHW_OK)
    {
        return CHW_ERROR;
    }

    start = chw_migrate_ms();
    n = 0;

    for (i = 0; i < ms->nelts; i++) {
        if (ms->elts[i].applied_at != NULL) {
            continue;
        }

        if (chw_migrate_apply(conn, ms, &ms->elts[i]) != CHW_OK) {
            return CHW_ERROR;
        }

        n++;
    }

    snprintf(napplied, sizeof(napplied), "%zu", n);
    snprintf(took, sizeof(took), "%ld", chw_migrate_ms() - start);

    chw_log(CHW_LOG_INFO,
            n ? "migrations applied" : "database is up to date, nothing to "
                                       "apply",
            "applied", napplied, "version", ms->elts[ms->nelts - 1].version,
            "dir", ms->dir, "ms", n ? took : NULL, NULL);

    return CHW_OK;
}


/* marks the applied migrations; warns of versions this release lacks */
static int
chw_migrate_load(PGconn *conn, chw_migrations_t *ms)
{
    int               i, n;
    PGresult         *res;
    const char       *version;
    chw_migration_t  *m;

    res = chw_pg_exec(conn, chw_migrate_applied, 0, NULL);

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        chw_pg_log_error(conn, res, "cannot read schema_migrations",
                         "query", chw_migrate_applied);
        PQclear(res);
        return CHW_ERROR;
    }

    n = PQntuples(res);

    for (i = 0; i < n; i++) {
        version = PQgetvalue(res, i, 0);

        m = chw_migrate_find(ms, version);
        if (m == NULL) {
            chw_log(CHW_LOG_WARN, "the database has a migration that is not "
                    "in the migrations directory (a newer release?)",
                    "version", version, "dir", ms->dir, NULL);
            continue;
        }

        m->applied_at = strdup(PQgetvalue(res, i, 1));
        if (m->applied_at == NULL) {
            chw_log(CHW_LOG_ERROR, "out of memory", NULL);
            PQclear(res);
            return CHW_ERROR;
        }
    }

    PQclear(res);

    return CHW_OK;
}


static chw_migration_t *
chw_migrate_find(chw_migrations_t *ms, const char *version)
{
    size_t  i;

    for (i = 0; i < ms->nelts; i++) {
        if (strcmp(ms->elts[i].version, version) == 0) {
            return &ms->elts[i];
        }
    }

    return NULL;
}


/* one migration, one transaction: the file's SQL and its version row */
static int
chw_migrate_apply(PGconn *conn, chw_migrations_t *ms, chw_migration_t *m)
{
    char         *sql, took[24];
    long          start;
    const char   *params[1];

    if (chw_migrate_read(ms->dir, m->file, &sql) != CHW_OK) {
        return CHW_ERROR;
    }

    start = chw_migrate_ms();
    params[0] = m->version;

    if (chw_pg_command(conn, "BEGIN", 0, NULL) != CHW_OK) {
        free(sql);
        return CHW_ERROR;
    }

    if (chw_migrate_exec(conn, m, sql) != CHW_OK
        || chw_pg_command(conn, "INSERT INTO schema_migrations (version) "
                          "VALUES ($1)", 1, params) != CHW_OK)
    {
        if (PQtransactionStatus(conn) != PQTRANS_IDLE) {
            (void) chw_pg_command(conn, "ROLLBACK", 0, NULL);
        }

        free(sql);
        return CHW_ERROR;
    }

    free(sql);

    if (chw_pg_command(conn, "COMMIT", 0, NULL) != CHW_OK) {
        chw_log(CHW_LOG_ERROR, "migration failed at commit",
                "file", m->file, NULL);
        return CHW_ERROR;
    }

    snprintf(took, sizeof(took), "%ld", chw_migrate_ms() - start);

    chw_log(CHW_LOG_INFO, "migration applied", "version", m->version,
            "file", m->file, "ms", took, NULL);

    return CHW_OK;
}


/* the whole file at once: trusted, without parameters, many statements */
static int
chw_migrate_exec(PGconn *conn, chw_migration_t *m, const char *sql)
{
    PGresult        *res;
    ExecStatusType   status;

    res = chw_pg_exec_script(conn, sql);
    status = PQresultStatus(res);

    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK
        && status != PGRES_EMPTY_QUERY)
    {
        chw_migrate_log_failure(res, conn, m, sql);
        PQclear(res);
        return CHW_ERROR;
    }

    PQclear(res);

    if (PQtransactionStatus(conn) != PQTRANS_INTRANS) {
        chw_log(CHW_LOG_ERROR, "migration ended its own transaction: "
                "remove BEGIN/COMMIT from the file, and check what of it "
                "was committed", "file", m->file, NULL);
        return CHW_ERROR;
    }

    return CHW_OK;
}


/* the server's error, with the line of the file it points at */
static void
chw_migrate_log_failure(PGresult *res, PGconn *conn, chw_migration_t *m,
    const char *sql)
{
    long          pos, chars, line;
    char          nline[24];
    const char   *p, *error, *position;

    error = chw_pg_error(conn, res);

    nline[0] = '\0';
    position = PQresultErrorField(res, PG_DIAG_STATEMENT_POSITION);

    if (position != NULL) {
        /* a 1-based position in characters, and the server speaks UTF-8 */
        pos = strtol(position, NULL, 10);
        chars = 0;
        line = 1;

        for (p = sql; *p != '\0' && chars < pos - 1; p++) {
            if (((unsigned char) *p & 0xc0) != 0x80) {
                chars++;
                line += (*p == '\n');
            }
        }

        snprintf(nline, sizeof(nline), "%ld", line);
    }

    chw_log(CHW_LOG_ERROR, "migration failed, rolled back",
            "file", m->file, "line", nline[0] ? nline : NULL,
            "error", error,
            "sqlstate", PQresultErrorField(res, PG_DIAG_SQLSTATE),
            "detail", PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL),
            "hint", PQresultErrorField(res, PG_DIAG_MESSAGE_HINT),
            "context", PQresultErrorField(res, PG_DIAG_CONTEXT),
            NULL);
}


static int
chw_migrate_read(const char *dir, const char *file, char **sql)
{
    int           err;
    FILE         *f;
    char         *buf, path[4096];
    size_t        n;
    struct stat   st;

    if ((size_t) snprintf(path, sizeof(path), "%s/%s", dir, file)
        >= sizeof(path))
    {
        chw_log(CHW_LOG_ERROR, "migration path too long", "dir", dir, NULL);
        return CHW_ERROR;
    }

    buf = NULL;
    err = 0;

    f = fopen(path, "r");
    if (f == NULL || fstat(fileno(f), &st) != 0) {
        err = errno;
        goto failed;
    }

    buf = malloc((size_t) st.st_size + 1);
    if (buf == NULL) {
        err = errno;
        goto failed;
    }

    n = fread(buf, 1, (size_t) st.st_size, f);
    if (n != (size_t) st.st_size) {
        err = ferror(f) ? errno : 0;
        goto failed;
    }

    buf[n] = '\0';
    fclose(f);

    if (strlen(buf) != n) {
        chw_log(CHW_LOG_ERROR, "migration file contains a NUL byte",
                "file", path, NULL);
        free(buf);
        return CHW_ERROR;
    }

    *sql = buf;

    return CHW_OK;

failed:

    chw_log(CHW_LOG_ERROR, "cannot read migration", "file", path,
            "error", err ? strerror(err) : "short read", NULL);

    if (f != NULL) {
        fclose(f);
    }

    free(buf);

    return CHW_ERROR;
}


/* migrate --status: every migration, applied or pending, on stdout */
static int
chw_migrate_status(PGconn *conn, chw_migrations_t *ms)
{
    int        exists;
    size_t     i;
    PGresult  *res;

    res = chw_pg_exec(conn, "SELECT to_regclass('schema_migrations') "
                      "IS NOT NULL", 0, NULL);

    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        chw_pg_log_error(conn, res, "cannot look for schema_migrations",
                         "dir", ms->dir);
        PQclear(res);
        return CHW_ERROR;
    }

    exists = (strcmp(PQgetvalue(res, 0, 0), "t") == 0);
    PQclear(res);

    if (exists && chw_migrate_load(conn, ms) != CHW_OK) {
        return CHW_ERROR;
    }

    for (i = 0; i < ms->nelts; i++) {
        printf("%s  %-7s  %-20s  %s\n", ms->elts[i].version,
               ms->elts[i].applied_at ? "applied" : "pending",
               ms->elts[i].applied_at ? ms->elts[i].applied_at : "",
               ms->elts[i].file);
    }

    return fflush(stdout) == 0 ? CHW_OK : CHW_ERROR;
}


static long
chw_migrate_ms(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return (long) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
