
/*
 * PostgreSQL for the worker: one connection per command, used one statement
 * at a time, but never through a blocking libpq call. Every wait (connect,
 * send, answer) is poll() on the socket against a deadline, with the
 * signals let in, so that a database that accepts and never answers (a
 * black-holed port, a stalled proxy) costs at most database_timeout, and
 * SIGTERM ends any wait within CHW_PG_STOP_GRACE.
 */


#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "chathistory_worker.h"


/* the connect bound when database_url sets no connect_timeout */
#define CHW_PG_CONNECT_TIMEOUT   10
/* seconds the database waits have, all told, after SIGTERM */
#define CHW_PG_STOP_GRACE        1.0


static int chw_pg_start(PGconn *conn, int reset, double timeout);
static double chw_pg_connect_timeout(const char *url);
static int chw_pg_session(PGconn *conn);
static int chw_pg_wait(PGconn *conn, short events, double deadline);
static void chw_pg_break(PGconn *conn);
static void chw_pg_readonly(PGconn *conn, const PGresult *res);
static PGresult *chw_pg_collect(PGconn *conn, double timeout);
static void chw_pg_notice(void *arg, const PGresult *res);
static const unsigned char *chw_utf8_next(const unsigned char *p,
    uint32_t *c);


/*
 * The seconds an answer is waited for (0: no bound), whether the session
 * gets a statement_timeout, and why the last wait failed when libpq does
 * not know: the worker has one connection at a time.
 */
static double   chw_pg_timeout;
static double   chw_pg_connect_bound;
static int      chw_pg_bounded;
static double   chw_pg_stop_deadline;
static char     chw_pg_why[128];


/*
 * Connects to database_url; the log names host, port and database only.
 * Keepalives and tcp_user_timeout close a connection whose peer vanished
 * (a partition) even while no answer is awaited; database_url may set its
 * own, which win, as they come after ours. bounded: the session also gets
 * statement_timeout = database_timeout (not for migrate, whose files may
 * legitimately run for long).
 */
PGconn *
chw_pg_connect(chw_config_t *cf, int bounded)
{
    char                user_timeout[32];
    PGconn             *conn;
    static const char  *keys[] = { "keepalives", "keepalives_idle",
                                   "keepalives_interval", "keepalives_count",
                                   "tcp_user_timeout", "dbname",
                                   "fallback_application_name", NULL };
    const char         *values[8];

    chw_pg_timeout = cf->database_timeout;
    chw_pg_bounded = bounded;
    chw_pg_connect_bound = chw_pg_connect_timeout(cf->database_url);

    snprintf(user_timeout, sizeof(user_timeout), "%.0f",
             ceil(cf->database_timeout * 1000));

    values[0] = "1";
    values[1] = "30";
    values[2] = "10";
    values[3] = "3";
    values[4] = cf->database_timeout > 0 ? user_timeout : "0";
    values[5] = cf->database_url;
    values[6] = CHW_NAME;
    values[7] = NULL;

    conn = PQconnectStartParams(keys, values, 1);
    if (conn == NULL) {
        chw_log(CHW_LOG_ERROR, "cannot connect to PostgreSQL",
                "error", "out of memory", NULL);
        return NULL;
    }

    PQsetNoticeReceiver(conn, chw_pg_notice, NULL);

    if (chw_pg_start(conn, 0, chw_pg_connect_bound) != CHW_OK) {
        chw_log(CHW_LOG_ERROR, "cannot connect to PostgreSQL",
                "error", chw_pg_error(conn, NULL), NULL);
        PQfinish(conn);
        return NULL;
    }

    chw_log(CHW_LOG_INFO, "connected to PostgreSQL", "host", PQhost(conn),
            "port", PQport(conn), "dbname", PQdb(conn), NULL);

    return conn;
}


/*
 * Connects again with the same parameters, after the connection was lost
 * or given up on; CHW_ERROR (logged) when it cannot.
 */
int
chw_pg_reset(PGconn *conn)
{
    if (chw_pg_start(conn, 1, chw_pg_connect_bound) != CHW_OK) {
        chw_log(CHW_LOG_ERROR, "cannot reconnect to PostgreSQL",
                "error", chw_pg_error(conn, NULL), NULL);
        return CHW_ERROR;
    }

    chw_log(CHW_LOG_INFO, "reconnected to PostgreSQL", "host", PQhost(conn),
            "port", PQport(conn), "dbname", PQdb(conn), NULL);

    return CHW_OK;
}


/*
 * PQconnectPoll() until the connection is made, then non-blocking mode and
 * the session's settings. libpq ignores connect_timeout in this API: the
 * deadline is ours.
 */
static int
chw_pg_start(PGconn *conn, int reset, double timeout)
{
    int                         rc;
    double                      deadline;
    PostgresPollingStatusType   st;

    chw_pg_why[0] = '\0';

    if (reset && !PQresetStart(conn)) {
        return CHW_ERROR;
    }

    if (PQstatus(conn) == CONNECTION_BAD) {
        return CHW_ERROR;
    }

    deadline = chw_now() + timeout;
    st = PGRES_POLLING_WRITING;

    for ( ;; ) {

        switch (st) {
        case PGRES_POLLING_OK:
            if (PQsetnonblocking(conn, 1) != 0) {
                return CHW_ERROR;
            }

            return chw_pg_session(conn);

        case PGRES_POLLING_FAILED:
            return CHW_ERROR;

        default:
            break;
        }

        rc = chw_pg_wait(conn, st == PGRES_POLLING_READING ? POLLIN : POLLOUT,
                         deadline);

        /* the caller finishes or resets the half-made connection */
        if (rc != CHW_OK) {
            if (rc == CHW_DECLINED) {
                snprintf(chw_pg_why, sizeof(chw_pg_why),
                         "database did not answer within %g s "
                         "(connect_timeout)", timeout);
            }

            return CHW_ERROR;
        }

        st = reset ? PQresetPoll(conn) : PQconnectPoll(conn);
    }
}


/* database_url's connect_timeout (libpq reads less than 2 as 2), else 10 */
static double
chw_pg_connect_timeout(const char *url)
{
    int                 t;
    char               *err;
    PQconninfoOption   *opts, *o;

    t = 0;
    err = NULL;

    opts = PQconninfoParse(url, &err);

    /* a bad database_url: PQconnectStartParams() says why */
    PQfreemem(err);

    for (o = opts; o != NULL && o->keyword != NULL; o++) {
        if (strcmp(o->keyword, "connect_timeout") == 0 && o->val != NULL) {
            t = atoi(o->val);
        }
    }

    PQconninfoFree(opts);

    if (t <= 0) {
        return CHW_PG_CONNECT_TIMEOUT;
    }

    return t < 2 ? 2 : t;
}


/*
 * statement_timeout and idle_in_transaction_session_timeout of the session,
 * unless the role, the database or database_url's options set them: the
 * server then stops, and rolls back, what the worker has given up on (its
 * own wait ends a second later, so that a slow but living server says why).
 */
static int
chw_pg_session(PGconn *conn)
{
    int          rc;
    char         ms[32];
    PGresult    *res;
    const char  *params[1];

    if (!chw_pg_bounded || chw_pg_timeout <= 0) {
        return CHW_OK;
    }

    snprintf(ms, sizeof(ms), "%.0f", ceil(chw_pg_timeout * 1000));
    params[0] = ms;

    res = chw_pg_exec(conn, "SELECT CASE WHEN current_setting("
              "'statement_timeout') = '0' THEN set_config("
              "'statement_timeout', $1, false) END, "
              "CASE WHEN current_setting("
              "'idle_in_transaction_session_timeout') = '0' THEN set_config("
              "'idle_in_transaction_session_timeout', $1, false) END",
              1, params);

    rc = PQresultStatus(res) == PGRES_TUPLES_OK ? CHW_OK : CHW_ERROR;
    PQclear(res);

    return rc;
}


/*
 * Sends a statement (PQsendQueryParams: one statement, parameters) and
 * pushes out what fits; chw_pg_result() waits for its answer.
 */
int
chw_pg_send(PGconn *conn, const char *sql, int nparams,
    const char *const *values, const int *lengths, const int *formats)
{
    chw_pg_why[0] = '\0';

    if (!PQsendQueryParams(conn, sql, nparams, NULL, values, lengths,
                           formats, 0))
    {
        return CHW_ERROR;
    }

    /* the rest, if any, goes while waiting for the answer */
    return PQflush(conn) == -1 ? CHW_ERROR : CHW_OK;
}


/* the answer to what chw_pg_send() sent, waited for database_timeout */
PGresult *
chw_pg_result(PGconn *conn)
{
    return chw_pg_collect(conn, chw_pg_timeout > 0 ? chw_pg_timeout + 1 : 0);
}


/*
 * Runs one statement with parameters; the result (NULL on a failure to
 * send or to get an answer in time), as PQexecParams() would give it.
 */
PGresult *
chw_pg_exec(PGconn *conn, const char *sql, int nparams,
    const char *const *params)
{
    if (chw_pg_send(conn, sql, nparams, params, NULL, NULL) != CHW_OK) {
        return NULL;
    }

    return chw_pg_result(conn);
}


/*
 * Runs a script of several statements without parameters (a migration
 * file), as PQexec() would, and waits for it without a bound: migrations
 * may rightly take long. SIGTERM still ends the wait; a vanished peer is
 * caught by keepalives and tcp_user_timeout.
 */
PGresult *
chw_pg_exec_script(PGconn *conn, const char *sql)
{
    chw_pg_why[0] = '\0';

    if (!PQsendQuery(conn, sql) || PQflush(conn) == -1) {
        return NULL;
    }

    return chw_pg_collect(conn, 0);
}


/*
 * Flushes, reads and parses until libpq has every result of the statement;
 * keeps the last one, or the first error (what PQexec() returns). timeout
 * 0: no bound but the signals.
 */
static PGresult *
chw_pg_collect(PGconn *conn, double timeout)
{
    int        rc, out;
    double     deadline;
    PGresult  *res, *r;

    deadline = timeout > 0 ? chw_now() + timeout : HUGE_VAL;
    res = NULL;

    for ( ;; ) {
        out = PQflush(conn);

        if (out == -1) {
            break;
        }

        if (out == 0 && !PQisBusy(conn)) {
            r = PQgetResult(conn);
            if (r == NULL) {
                chw_pg_readonly(conn, res);
                return res;
            }

            if (res != NULL && PQresultStatus(res) == PGRES_FATAL_ERROR) {
                PQclear(r);

            } else {
                PQclear(res);
                res = r;
            }

            continue;
        }

        rc = chw_pg_wait(conn, out == 1 ? POLLIN | POLLOUT : POLLIN,
                         deadline);

        if (rc != CHW_OK) {
            if (rc == CHW_DECLINED) {
                snprintf(chw_pg_why, sizeof(chw_pg_why),
                         "database did not answer within %g s "
                         "(database_timeout)", chw_pg_timeout);
            }

            break;
        }

        /* a failure here leaves the connection bad: PQgetResult() says why */
        (void) PQconsumeInput(conn);
    }

    PQclear(res);
    chw_pg_break(conn);

    return NULL;
}


/*
 * poll() for events on the connection's socket until the deadline: CHW_OK
 * when ready, CHW_DECLINED at the deadline, CHW_ABORTED once SIGTERM has
 * been seen CHW_PG_STOP_GRACE ago, CHW_ERROR when poll() fails. The grace
 * is for what a stopping worker still writes (the outcome of the batch in
 * hand, the jobs a second SIGTERM gives back), a matter of milliseconds
 * for a database that answers; after it every wait ends at once.
 */
static int
chw_pg_wait(PGconn *conn, short events, double deadline)
{
    int              n, gen;
    double           t, end;
    struct pollfd    pfd;

    for ( ;; ) {
        gen = chw_signal_gen;
        t = chw_now();

        if (chw_stop && chw_pg_stop_deadline == 0) {
            chw_pg_stop_deadline = t + CHW_PG_STOP_GRACE;
        }

        end = deadline;

        if (chw_stop && chw_pg_stop_deadline < end) {
            end = chw_pg_stop_deadline;
        }

        if (t >= end) {
            if (end < deadline) {
                snprintf(chw_pg_why, sizeof(chw_pg_why),
                         "stopped while waiting for the database");
                return CHW_ABORTED;
            }

            return CHW_DECLINED;
        }

        pfd.fd = PQsocket(conn);
        pfd.events = events;
        pfd.revents = 0;

        if (pfd.fd < 0) {
            return CHW_OK;
        }

        n = chw_signal_poll(&pfd, 1, end - t, gen);

        if (n > 0) {
            return CHW_OK;
        }

        if (n == -1 && errno != EINTR) {
            snprintf(chw_pg_why, sizeof(chw_pg_why), "poll() failed: %s",
                     strerror(errno));
            return CHW_ERROR;
        }
    }
}


/*
 * The server refused a write as read-only (SQLSTATE 25006): the primary
 * was demoted, or a standby promoted elsewhere. The connection is given
 * up on, so that the caller reconnects, and libpq's target_session_attrs
 * (read-write) of a multi-host database_url finds the writable host.
 */
static void
chw_pg_readonly(PGconn *conn, const PGresult *res)
{
    const char  *state;

    if (res == NULL || PQresultStatus(res) != PGRES_FATAL_ERROR) {
        return;
    }

    state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

    if (state != NULL && strcmp(state, "25006") == 0) {
        chw_log(CHW_LOG_WARN, "PostgreSQL is read-only, reconnecting",
                "host", PQhost(conn), "port", PQport(conn), NULL);
        chw_pg_break(conn);
    }
}


/*
 * Gives up on the connection: it may still owe an answer, so it cannot
 * carry another statement. Shutting the socket down makes libpq see the
 * end of it at once (it marks the connection bad, as a lost one, without
 * writing to a peer that may not read), and then drops what it had.
 */
static void
chw_pg_break(PGconn *conn)
{
    int        fd;
    PGresult  *r;

    fd = PQsocket(conn);

    if (fd >= 0 && PQstatus(conn) != CONNECTION_BAD) {
        (void) shutdown(fd, SHUT_RDWR);
        (void) PQconsumeInput(conn);
    }

    while (!PQisBusy(conn) && (r = PQgetResult(conn)) != NULL) {
        PQclear(r);
    }
}


/* why the last statement failed: the server's message, ours or libpq's */
const char *
chw_pg_error(PGconn *conn, PGresult *res)
{
    const char  *error;

    error = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY)
                        : NULL;

    if (error != NULL) {
        return error;
    }

    if (chw_pg_why[0] != '\0') {
        return chw_pg_why;
    }

    return PQerrorMessage(conn);
}


/* runs a statement that returns nothing the caller needs */
int
chw_pg_command(PGconn *conn, const char *sql, int nparams,
    const char *const *params)
{
    PGresult        *res;
    ExecStatusType   status;

    res = chw_pg_exec(conn, sql, nparams, params);
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
    /* a NULL key would end the list: a NULL value is skipped instead */
    chw_log(CHW_LOG_ERROR, msg, key != NULL ? key : "query", value,
            "error", chw_pg_error(conn, res),
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


/* the first value of the first row, malloc()ed; NULL on error or no row */
char *
chw_pg_value(PGconn *conn, const char *sql, int nparams,
    const char *const *params)
{
    char      *v;
    PGresult  *res;

    res = chw_pg_exec(conn, sql, nparams, params);

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

    return chw_pg_connect(cf, 1);
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


/* monotonic seconds */
double
chw_now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return (double) ts.tv_sec + ts.tv_nsec / 1e9;
}
