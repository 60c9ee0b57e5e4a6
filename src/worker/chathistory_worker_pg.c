
/*
 * PostgreSQL for the worker: synchronous libpq, one connection per command.
 */


#include <stdlib.h>
#include <string.h>

#include "chathistory_worker.h"


static void chw_pg_notice(void *arg, const PGresult *res);
static const unsigned char *chw_utf8_next(const unsigned char *p,
    uint32_t *c);


/* connects to database_url; the log names host, port and database only */
PGconn *
chw_pg_connect(chw_config_t *cf)
{
    PGconn             *conn;
    static const char  *keys[] = { "dbname", "fallback_application_name",
                                   NULL };
    const char         *values[] = { cf->database_url, CHW_NAME, NULL };

    conn = PQconnectdbParams(keys, values, 1);
    if (conn == NULL) {
        chw_log(CHW_LOG_ERROR, "cannot connect to PostgreSQL",
                "error", "out of memory", NULL);
        return NULL;
    }

    if (PQstatus(conn) != CONNECTION_OK) {
        chw_log(CHW_LOG_ERROR, "cannot connect to PostgreSQL",
                "error", PQerrorMessage(conn), NULL);
        PQfinish(conn);
        return NULL;
    }

    PQsetNoticeReceiver(conn, chw_pg_notice, NULL);

    chw_log(CHW_LOG_INFO, "connected to PostgreSQL", "host", PQhost(conn),
            "port", PQport(conn), "dbname", PQdb(conn), NULL);

    return conn;
}


/* runs a statement that returns nothing the caller needs */
int
chw_pg_command(PGconn *conn, const char *sql, int nparams,
    const char *const *params)
{
    PGresult        *res;
    ExecStatusType   status;

    res = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
    status = PQresultStatus(res);

    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
        chw_pg_log_error(conn, res, "query failed", "query", sql);
        PQclear(res);
        return CHW_ERROR;
    }

    PQclear(res);

    return CHW_OK;
}


/* logs a failed statement: the server's message, SQLSTATE, detail, hint */
void
chw_pg_log_error(PGconn *conn, PGresult *res, const char *msg,
    const char *key, const char *value)
{
    const char  *error;

    error = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY)
                        : NULL;

    if (error == NULL) {
        error = PQerrorMessage(conn);
    }

    /* a NULL key would end the list: a NULL value is skipped instead */
    chw_log(CHW_LOG_ERROR, msg, key != NULL ? key : "query", value,
            "error", error,
            "sqlstate", PQresultErrorField(res, PG_DIAG_SQLSTATE),
            "detail", PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL),
            "hint", PQresultErrorField(res, PG_DIAG_MESSAGE_HINT),
            NULL);
}


/* the server's NOTICEs and WARNINGs, as log lines */
static void
chw_pg_notice(void *arg, const PGresult *res)
{
    const char       *severity;
    chw_log_level_e   level;

    severity = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);

    level = (severity != NULL && strcmp(severity, "WARNING") == 0)
            ? CHW_LOG_WARN : CHW_LOG_INFO;

    chw_log(level, "PostgreSQL says",
            "severity", severity,
            "message", PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY),
            "detail", PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL),
            NULL);
}


/* 1 when the connection is usable, else tries one reset */
int
chw_pg_ok(PGconn *conn)
{
    if (PQstatus(conn) == CONNECTION_OK) {
        return 1;
    }

    chw_log(CHW_LOG_WARN, "lost the PostgreSQL connection, reconnecting",
            NULL);

    PQreset(conn);

    if (PQstatus(conn) != CONNECTION_OK) {
        chw_log(CHW_LOG_ERROR, "cannot reconnect to PostgreSQL",
                "error", PQerrorMessage(conn), NULL);
        return 0;
    }

    chw_log(CHW_LOG_INFO, "reconnected to PostgreSQL", NULL);

    return 1;
}


/* the first value of the first row, malloc()ed; NULL on error or no row */
char *
chw_pg_value(PGconn *conn, const char *sql, int nparams,
    const char *const *params)
{
    char      *v;
    PGresult  *res;

    res = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        chw_pg_log_error(conn, res, "query failed", "query", sql);
        PQclear(res);
        return NULL;
    }

    v = (PQntuples(res) > 0 && !PQgetisnull(res, 0, 0))
        ? strdup(PQgetvalue(res, 0, 0)) : NULL;

    PQclear(res);

    return v;
}


/* a connection for a one-shot command; NULL with a message when unset */
PGconn *
chw_admin_connect(chw_config_t *cf, const char *command)
{
    if (cf->database_url == NULL) {
        fprintf(stderr, CHW_NAME " %s: database_url is not set "
                "(--database-url or CHATHISTORY_DATABASE_URL)\n", command);
        return NULL;
    }

    return chw_pg_connect(cf);
}


/* Pick the subcommand named by argv[0], connect, run it, disconnect. */
int
chw_admin_dispatch(chw_config_t *cf, int argc, char **argv,
    const char *command, const chw_admin_cmd_t *cmds, const char *usage)
{
    int                     rc;
    PGconn                 *conn;
    const chw_admin_cmd_t  *c;

    for (c = cmds; argc >= 1 && c->name != NULL; c++) {
        if (strcmp(argv[0], c->name) == 0) {
            break;
        }
    }

    if (argc < 1 || c->name == NULL) {
        fputs(usage, stderr);
        return CHW_EXIT_USAGE;
    }

    conn = chw_admin_connect(cf, command);
    if (conn == NULL) {
        return cf->database_url == NULL ? CHW_EXIT_USAGE : CHW_EXIT_FAILURE;
    }

    rc = c->handler(conn, argc - 1, argv + 1);
    PQfinish(conn);

    return rc;
}


/*
 * A name given on the command line (an organization's, a key's): not
 * empty, at most CHW_NAME_MAX characters of valid UTF-8, none of them a
 * control character (C0, DEL, C1), so that lists and logs stay one line a
 * row. Says what is wrong on stderr.
 */
int
chw_admin_name(const char *command, const char *what, const char *name)
{
    size_t                n;
    uint32_t              c;
    const unsigned char  *p;

    if (*name == '\0') {
        fprintf(stderr, CHW_NAME " %s: %s name is empty\n", command, what);
        return CHW_ERROR;
    }

    for (p = (const unsigned char *) name, n = 0; *p != '\0'; n++) {
        p = chw_utf8_next(p, &c);

        if (p == NULL) {
            fprintf(stderr, CHW_NAME " %s: %s name is not valid UTF-8\n",
                    command, what);
            return CHW_ERROR;
        }

        if (c < 0x20 || (c >= 0x7f && c <= 0x9f)) {
            fprintf(stderr, CHW_NAME " %s: %s name contains a control "
                    "character (U+%04X)\n", command, what, (unsigned) c);
            return CHW_ERROR;
        }
    }

    if (n > CHW_NAME_MAX) {
        fprintf(stderr, CHW_NAME " %s: %s name is longer than %d characters "
                "(%zu)\n", command, what, CHW_NAME_MAX, n);
        return CHW_ERROR;
    }

    return CHW_OK;
}


/* decodes one UTF-8 character; NULL when malformed, overlong or a surrogate */
static const unsigned char *
chw_utf8_next(const unsigned char *p, uint32_t *c)
{
    int       i, len;
    uint32_t  min;

    if (p[0] < 0x80) {
        *c = p[0];
        return p + 1;
    }

    if ((p[0] & 0xe0) == 0xc0) {
        len = 2;
        min = 0x80;
        *c = p[0] & 0x1f;

    } else if ((p[0] & 0xf0) == 0xe0) {
        len = 3;
        min = 0x800;
        *c = p[0] & 0x0f;

    } else if ((p[0] & 0xf8) == 0xf0) {
        len = 4;
        min = 0x10000;
        *c = p[0] & 0x07;

    } else {
        return NULL;
    }

    for (i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80) {
            return NULL;
        }

        *c = (*c << 6) | (p[i] & 0x3f);
    }

    if (*c < min || *c > 0x10ffff || (*c >= 0xd800 && *c <= 0xdfff)) {
        return NULL;
    }

    return p + len;
}
