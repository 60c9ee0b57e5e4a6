
/*
 * PostgreSQL for the worker: synchronous libpq, one connection per command.
 */


#include <stdlib.h>
#include <string.h>

#include "chathistory_worker.h"


static void chw_pg_notice(void *arg, const PGresult *res);


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

    chw_log(CHW_LOG_ERROR, msg, key, value, "error", error,
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
