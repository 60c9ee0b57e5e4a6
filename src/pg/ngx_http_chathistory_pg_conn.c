
/*
 * One libpq connection driven by nginx events: connect, prepare, execute,
 * idle. Reads are level-triggered because libpq may leave bytes in the
 * socket after PQconsumeInput; writes are armed only while libpq has
 * output pending.
 */


#include "ngx_http_chathistory_pg.h"
#include "ngx_http_chathistory_statements.h"


/* why a statement failed where it ran */
#define NGX_HTTP_CHATHISTORY_PG_READONLY  1
#define NGX_HTTP_CHATHISTORY_PG_GOING     2


static ngx_int_t ngx_http_chathistory_pg_conn_attach(
    ngx_http_chathistory_pg_conn_t *pc);
static void ngx_http_chathistory_pg_conn_detach(
    ngx_http_chathistory_pg_conn_t *pc);
static ngx_file_uniq_t ngx_http_chathistory_pg_socket_id(ngx_socket_t fd);
static ngx_int_t ngx_http_chathistory_pg_want_write(ngx_connection_t *c,
    ngx_uint_t want);
static void ngx_http_chathistory_pg_read_handler(ngx_event_t *ev);
static void ngx_http_chathistory_pg_write_handler(ngx_event_t *ev);
static void ngx_http_chathistory_pg_connect_poll(
    ngx_http_chathistory_pg_conn_t *pc);
static ngx_int_t ngx_http_chathistory_pg_conn_dispatch(
    ngx_http_chathistory_pg_conn_t *pc);
static ngx_int_t ngx_http_chathistory_pg_conn_flush(
    ngx_http_chathistory_pg_conn_t *pc);
static ngx_int_t ngx_http_chathistory_pg_conn_receive(
    ngx_http_chathistory_pg_conn_t *pc);
static ngx_int_t ngx_http_chathistory_pg_conn_result(
    ngx_http_chathistory_pg_conn_t *pc);
static ngx_uint_t ngx_http_chathistory_pg_conn_away(
    ngx_http_chathistory_pg_conn_t *pc, PGresult *res);
static void ngx_http_chathistory_pg_conn_idle_input(
    ngx_http_chathistory_pg_conn_t *pc);
static void ngx_http_chathistory_pg_conn_fail(
    ngx_http_chathistory_pg_conn_t *pc, const char *what,
    ngx_http_chathistory_pg_failure_e failure);
static void ngx_http_chathistory_pg_conn_lost(
    ngx_http_chathistory_pg_conn_t *pc, const char *what);


ngx_http_chathistory_pg_conn_t *
ngx_http_chathistory_pg_conn_open(ngx_http_chathistory_pg_pool_t *pool)
{
    ngx_str_t                          msg;
    ngx_http_chathistory_pg_conn_t    *pc;
    ngx_http_chathistory_main_conf_t  *cmcf;

    cmcf = pool->conf;

    pc = ngx_calloc(sizeof(ngx_http_chathistory_pg_conn_t), pool->log);
    if (pc == NULL) {
        return NULL;
    }

    pc->pool = pool;
    pc->state = NGX_HTTP_CHATHISTORY_PG_CONNECTING;
    pc->generation = pool->generation;

    /* host names were resolved into hostaddr at configuration time, so
     * this does not block on DNS */
    pc->pgconn = PQconnectStartParams(pool->db->keywords, pool->db->values,
                                      0);
    if (pc->pgconn == NULL) {
        ngx_log_error(NGX_LOG_ERR, pool->log, 0,
                      "chathistory: cannot allocate a PostgreSQL connection");
        ngx_free(pc);
        return NULL;
    }

    if (PQstatus(pc->pgconn) == CONNECTION_BAD
        || PQsetnonblocking(pc->pgconn, 1) == -1)
    {
        ngx_log_error(NGX_LOG_ERR, pool->log, 0,
                      "chathistory: PostgreSQL at \"%V\": connect failed: %V",
                      &pool->db->target,
                      ngx_http_chathistory_pg_error(pc->pgconn, &msg));
        PQfinish(pc->pgconn);
        ngx_free(pc);
        return NULL;
    }

    if (ngx_http_chathistory_pg_conn_attach(pc) != NGX_OK) {
        PQfinish(pc->pgconn);
        ngx_free(pc);
        return NULL;
    }

    ngx_add_timer(pc->connection->read, cmcf->connect_timeout);

    /* libpq asks for PQconnectPoll as if the socket were writable */
    if (ngx_http_chathistory_pg_want_write(pc->connection, 1) != NGX_OK) {
        ngx_http_chathistory_pg_conn_detach(pc);
        PQfinish(pc->pgconn);
        ngx_free(pc);
        return NULL;
    }

    return pc;
}


/* Wrap libpq's socket in an nginx connection with its events. */
static ngx_int_t
ngx_http_chathistory_pg_conn_attach(ngx_http_chathistory_pg_conn_t *pc)
{
    ngx_socket_t       fd;
    ngx_connection_t  *c;

    fd = PQsocket(pc->pgconn);
    if (fd == -1) {
        ngx_log_error(NGX_LOG_ERR, pc->pool->log, 0,
                      "chathistory: PostgreSQL connection has no socket");
        return NGX_ERROR;
    }

    c = ngx_get_connection(fd, pc->pool->log);
    if (c == NULL) {
        return NGX_ERROR;
    }

    pc->socket_id = ngx_http_chathistory_pg_socket_id(fd);

    c->data = pc;
    c->read->handler = ngx_http_chathistory_pg_read_handler;
    c->write->handler = ngx_http_chathistory_pg_write_handler;
    c->read->log = c->log;
    c->write->log = c->log;
    c->log->action = "connecting to PostgreSQL";

    pc->connection = c;

    if (ngx_add_event(c->read, NGX_READ_EVENT, NGX_LEVEL_EVENT) != NGX_OK) {
        ngx_http_chathistory_pg_conn_detach(pc);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* What tells two sockets apart that had the same number. */
static ngx_file_uniq_t
ngx_http_chathistory_pg_socket_id(ngx_socket_t fd)
{
    ngx_file_info_t  fi;

    if (ngx_fd_info(fd, &fi) == NGX_FILE_ERROR) {
        return 0;
    }

    return ngx_file_uniq(&fi);
}


/* Forget the nginx side of the socket; libpq owns and closes the fd. */
static void
ngx_http_chathistory_pg_conn_detach(ngx_http_chathistory_pg_conn_t *pc)
{
    ngx_connection_t  *c;

    c = pc->connection;
    if (c == NULL) {
        return;
    }

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    if (c->read->active) {
        ngx_del_event(c->read, NGX_READ_EVENT, NGX_CLOSE_EVENT);
    }

    if (c->write->active) {
        ngx_del_event(c->write, NGX_WRITE_EVENT, NGX_CLOSE_EVENT);
    }

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    ngx_free_connection(c);
    c->fd = (ngx_socket_t) -1;
    pc->connection = NULL;
}


static ngx_int_t
ngx_http_chathistory_pg_want_write(ngx_connection_t *c, ngx_uint_t want)
{
    if (want && !c->write->active) {
        return ngx_add_event(c->write, NGX_WRITE_EVENT, NGX_LEVEL_EVENT);
    }

    if (!want && c->write->active) {
        return ngx_del_event(c->write, NGX_WRITE_EVENT, 0);
    }

    return NGX_OK;
}


static void
ngx_http_chathistory_pg_read_handler(ngx_event_t *ev)
{
    ngx_connection_t                *c;
    ngx_http_chathistory_pg_conn_t  *pc;

    c = ev->data;
    pc = c->data;

    if (ev->timedout) {
        ev->timedout = 0;

        switch (pc->state) {

        case NGX_HTTP_CHATHISTORY_PG_CONNECTING:
            ngx_http_chathistory_pg_conn_fail(pc, "connect timed out",
                                          NGX_HTTP_CHATHISTORY_PG_UNREACHABLE);
            return;

        case NGX_HTTP_CHATHISTORY_PG_IDLE:
            /* unused for a while: give the server its backend back */
            ngx_http_chathistory_pg_pool_expired(pc);
            return;

        default:
            ngx_http_chathistory_pg_conn_fail(pc, "query timed out",
                                              NGX_HTTP_CHATHISTORY_PG_TIMEOUT);
            return;
        }
    }

    switch (pc->state) {

    case NGX_HTTP_CHATHISTORY_PG_CONNECTING:
        ngx_http_chathistory_pg_connect_poll(pc);
        return;

    case NGX_HTTP_CHATHISTORY_PG_IDLE:
        ngx_http_chathistory_pg_conn_idle_input(pc);
        return;

    default:
        if (ngx_http_chathistory_pg_conn_receive(pc) != NGX_OK) {
            ngx_http_chathistory_pg_conn_lost(pc, "reading a result failed");
        }
    }
}


static void
ngx_http_chathistory_pg_write_handler(ngx_event_t *ev)
{
    ngx_connection_t                *c;
    ngx_http_chathistory_pg_conn_t  *pc;

    c = ev->data;
    pc = c->data;

    if (pc->state == NGX_HTTP_CHATHISTORY_PG_CONNECTING) {
        ngx_http_chathistory_pg_connect_poll(pc);
        return;
    }

    if (ngx_http_chathistory_pg_conn_flush(pc) != NGX_OK) {
        ngx_http_chathistory_pg_conn_lost(pc, "sending a query failed");
    }
}


static void
ngx_http_chathistory_pg_connect_poll(ngx_http_chathistory_pg_conn_t *pc)
{
    ngx_socket_t                    fd;
    ngx_connection_t               *c;
    PostgresPollingStatusType       status;

    status = PQconnectPoll(pc->pgconn);
    c = pc->connection;

    /* libpq opens a new socket when it moves to the next host or address
     * or retries without SSL, often under the number of the one it closed
     * (which left epoll with it): a new socket is a new inode */
    fd = PQsocket(pc->pgconn);

    if (fd != -1
        && (fd != c->fd
            || ngx_http_chathistory_pg_socket_id(fd) != pc->socket_id))
    {
        ngx_http_chathistory_pg_conn_detach(pc);

        if (ngx_http_chathistory_pg_conn_attach(pc) != NGX_OK) {
            ngx_http_chathistory_pg_conn_lost(pc, "cannot watch socket");
            return;
        }

        c = pc->connection;
        ngx_add_timer(c->read, pc->pool->conf->connect_timeout);
    }

    switch (status) {

    case PGRES_POLLING_WRITING:
        if (ngx_http_chathistory_pg_want_write(c, 1) != NGX_OK) {
            ngx_http_chathistory_pg_conn_lost(pc, "cannot watch socket");
        }
        return;

    case PGRES_POLLING_READING:
        if (ngx_http_chathistory_pg_want_write(c, 0) != NGX_OK) {
            ngx_http_chathistory_pg_conn_lost(pc, "cannot watch socket");
        }
        return;

    case PGRES_POLLING_OK:
        break;

    default:
        ngx_http_chathistory_pg_conn_lost(pc, "connect failed");
        return;
    }

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (ngx_http_chathistory_pg_want_write(c, 0) != NGX_OK) {
        ngx_http_chathistory_pg_conn_lost(pc, "cannot watch socket");
        return;
    }

    c->log->action = "talking to PostgreSQL";
    pc->state = NGX_HTTP_CHATHISTORY_PG_IDLE;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, c->log, 0,
                   "chathistory: connected to PostgreSQL, pid %d",
                   PQbackendPID(pc->pgconn));

    ngx_http_chathistory_pg_pool_connected(pc);
}


/* Start a query on an idle connection. */
void
ngx_http_chathistory_pg_conn_send(ngx_http_chathistory_pg_conn_t *pc,
    ngx_http_chathistory_pg_query_t *q)
{
    pc->query = q;
    pc->stmt = q->stmt;
    pc->reprepared = 0;
    q->conn = pc;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, pc->connection->log, 0,
                   "chathistory: \"%s\" on PostgreSQL backend %d",
                   ngx_http_chathistory_statement(q->stmt)->name,
                   PQbackendPID(pc->pgconn));

    pc->connection->read->cancelable = 0;
    ngx_add_timer(pc->connection->read, pc->pool->conf->query_timeout);

    if (ngx_http_chathistory_pg_conn_dispatch(pc) != NGX_OK) {
        /* the caller may be inside the request: answer it later */
        pc->query = NULL;
        q->conn = NULL;
        ngx_http_chathistory_pg_query_fail(q,
                                         NGX_HTTP_CHATHISTORY_PG_UNREACHABLE);
        ngx_http_chathistory_pg_conn_lost(pc, "sending a query failed");
    }
}


/* Prepare the statement if this connection has not, else execute it. */
static ngx_int_t
ngx_http_chathistory_pg_conn_dispatch(ngx_http_chathistory_pg_conn_t *pc)
{
    int                                      ok;
    uint64_t                                 bit;
    const ngx_http_chathistory_statement_t  *st;

    st = ngx_http_chathistory_statement(pc->stmt);
    bit = (uint64_t) 1 << pc->stmt;

    if (!pc->pool->conf->prepare) {
        /* behind a transaction-mode pooler no statement outlives its
         * transaction: an unnamed one, parsed with its parameters */
        if (pc->query == NULL) {
            pc->state = NGX_HTTP_CHATHISTORY_PG_IDLE;
            ngx_http_chathistory_pg_pool_released(pc);
            return NGX_OK;
        }

        ok = PQsendQueryParams(pc->pgconn, st->sql, pc->query->nparams, NULL,
                               pc->query->values, NULL, NULL, 0);
        pc->state = NGX_HTTP_CHATHISTORY_PG_EXECUTING;

    } else if (!(pc->prepared & bit)) {
        ok = PQsendPrepare(pc->pgconn, st->name, st->sql, st->nparams, NULL);
        pc->state = NGX_HTTP_CHATHISTORY_PG_PREPARING;

    } else if (pc->query == NULL) {
        /* the client left before its statement was prepared */
        pc->state = NGX_HTTP_CHATHISTORY_PG_IDLE;
        ngx_http_chathistory_pg_pool_released(pc);
        return NGX_OK;

    } else {
        ok = PQsendQueryPrepared(pc->pgconn, st->name, pc->query->nparams,
                                 pc->query->values, NULL, NULL, 0);
        pc->state = NGX_HTTP_CHATHISTORY_PG_EXECUTING;
    }

    if (!ok) {
        return NGX_ERROR;
    }

    return ngx_http_chathistory_pg_conn_flush(pc);
}


static ngx_int_t
ngx_http_chathistory_pg_conn_flush(ngx_http_chathistory_pg_conn_t *pc)
{
    int  rc;

    rc = PQflush(pc->pgconn);

    if (rc == -1) {
        return NGX_ERROR;
    }

    return ngx_http_chathistory_pg_want_write(pc->connection, rc == 1);
}


/* Read what arrived; act once libpq has the whole result. */
static ngx_int_t
ngx_http_chathistory_pg_conn_receive(ngx_http_chathistory_pg_conn_t *pc)
{
    PGresult  *res;

    if (!PQconsumeInput(pc->pgconn)) {
        return NGX_ERROR;
    }

    while (!PQisBusy(pc->pgconn)) {
        res = PQgetResult(pc->pgconn);

        if (res == NULL) {
            return ngx_http_chathistory_pg_conn_result(pc);
        }

        /* a statement gives one result; keep the first, drop the rest */
        if (pc->result == NULL) {
            pc->result = res;

        } else {
            PQclear(res);
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_chathistory_pg_conn_result(ngx_http_chathistory_pg_conn_t *pc)
{
    ngx_uint_t                        away;
    PGresult                         *res;
    ngx_http_chathistory_pg_query_t  *q;

    res = pc->result;
    pc->result = NULL;

    if (pc->state == NGX_HTTP_CHATHISTORY_PG_PREPARING) {

        /* behind a pooler, another client may have prepared it for us */
        if (res != NULL
            && PQresultStatus(res) == PGRES_FATAL_ERROR
            && ngx_strcmp(ngx_http_chathistory_pg_sqlstate(res), "42P05")
               == 0)
        {
            PQclear(res);
            res = NULL;
            pc->prepared |= (uint64_t) 1 << pc->stmt;

            return ngx_http_chathistory_pg_conn_dispatch(pc);
        }

        if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK) {
            ngx_log_error(NGX_LOG_ALERT, pc->connection->log, 0,
                          "chathistory: preparing \"%s\" failed: %s",
                          ngx_http_chathistory_statement(pc->stmt)->name,
                          res ? PQresultErrorMessage(res) : "no result");
            PQclear(res);
            return NGX_ERROR;
        }

        PQclear(res);
        pc->prepared |= (uint64_t) 1 << pc->stmt;

        return ngx_http_chathistory_pg_conn_dispatch(pc);
    }

    /* the server forgot our statements: a restart behind a pooler, or
     * DISCARD ALL; prepare them again, once */
    if (res != NULL
        && PQresultStatus(res) == PGRES_FATAL_ERROR
        && ngx_strcmp(ngx_http_chathistory_pg_sqlstate(res), "26000") == 0
        && !pc->reprepared)
    {
        ngx_log_error(NGX_LOG_INFO, pc->connection->log, 0,
                      "chathistory: PostgreSQL at \"%V\" forgot the "
                      "prepared statements, preparing them again",
                      &pc->pool->db->target);

        PQclear(res);
        pc->prepared = 0;
        pc->reprepared = 1;
        return ngx_http_chathistory_pg_conn_dispatch(pc);
    }

    if (pc->connection->read->timer_set) {
        ngx_del_timer(pc->connection->read);
    }

    away = ngx_http_chathistory_pg_conn_away(pc, res);

    if (away) {
        PQclear(res);
        res = NULL;
    }

    q = pc->query;
    pc->query = NULL;
    pc->state = NGX_HTTP_CHATHISTORY_PG_IDLE;

    if (q != NULL) {
        q->conn = NULL;
        ngx_http_chathistory_pg_query_finish(q, res,
                                     away ? NGX_HTTP_CHATHISTORY_PG_UNREACHABLE
                                          : NGX_HTTP_CHATHISTORY_PG_OK);
    }

    PQclear(res);

    if (away == NGX_HTTP_CHATHISTORY_PG_GOING) {
        ngx_http_chathistory_pg_conn_lost(pc, "server going away");
        return NGX_OK;
    }

    if (PQstatus(pc->pgconn) != CONNECTION_OK) {
        ngx_http_chathistory_pg_conn_lost(pc, "connection lost");
        return NGX_OK;
    }

    ngx_http_chathistory_pg_pool_released(pc);

    return NGX_OK;
}


/*
 * A statement that failed because of where it ran, not of what it is:
 * the primary turned read-only (demoted to a standby), or the server is
 * shutting down. Its query is told the database is unreachable (the
 * capture spools, the API answers 503), and the connection goes.
 */
static ngx_uint_t
ngx_http_chathistory_pg_conn_away(ngx_http_chathistory_pg_conn_t *pc,
    PGresult *res)
{
    const char  *state;

    if (res == NULL || PQresultStatus(res) != PGRES_FATAL_ERROR) {
        return 0;
    }

    state = ngx_http_chathistory_pg_sqlstate(res);

    if (ngx_strcmp(state, "25006") == 0 && !pc->pool->replica) {
        if (pc->generation == pc->pool->generation) {
            ngx_http_chathistory_pg_pool_readonly(pc->pool);
        }

        return NGX_HTTP_CHATHISTORY_PG_READONLY;
    }

    if (ngx_strncmp(state, "57P0", 4) == 0) {
        ngx_log_error(NGX_LOG_WARN, pc->connection->log, 0,
                      "chathistory: PostgreSQL at \"%V\" is going away "
                      "(SQLSTATE %s)", &pc->pool->db->target, state);
        return NGX_HTTP_CHATHISTORY_PG_GOING;
    }

    return 0;
}


/* An idle connection speaks only to say it is going away. */
static void
ngx_http_chathistory_pg_conn_idle_input(ngx_http_chathistory_pg_conn_t *pc)
{
    PGnotify  *n;
    PGresult  *res;

    if (!PQconsumeInput(pc->pgconn)) {
        ngx_http_chathistory_pg_conn_lost(pc, "idle connection closed");
        return;
    }

    while ((n = PQnotifies(pc->pgconn)) != NULL) {
        PQfreemem(n);
    }

    while (!PQisBusy(pc->pgconn)
           && (res = PQgetResult(pc->pgconn)) != NULL)
    {
        PQclear(res);
    }

    if (PQstatus(pc->pgconn) != CONNECTION_OK) {
        ngx_http_chathistory_pg_conn_lost(pc, "idle connection closed");
    }
}


static void
ngx_http_chathistory_pg_conn_fail(ngx_http_chathistory_pg_conn_t *pc,
    const char *what, ngx_http_chathistory_pg_failure_e failure)
{
    ngx_str_t                         msg;
    ngx_uint_t                        connected;
    ngx_http_chathistory_pg_query_t  *q;

    connected = (pc->state != NGX_HTTP_CHATHISTORY_PG_CONNECTING);

    ngx_log_error(NGX_LOG_ERR, pc->pool->log, 0,
                  "chathistory: PostgreSQL at \"%V\": %s: %V",
                  &pc->pool->db->target, what,
                  ngx_http_chathistory_pg_error(pc->pgconn, &msg));

    q = pc->query;
    pc->query = NULL;

    if (q != NULL) {
        q->conn = NULL;
        ngx_http_chathistory_pg_query_finish(q, NULL, failure);
    }

    ngx_http_chathistory_pg_pool_failed(pc, connected);
}


static void
ngx_http_chathistory_pg_conn_lost(ngx_http_chathistory_pg_conn_t *pc,
    const char *what)
{
    ngx_http_chathistory_pg_conn_fail(pc, what,
                                      NGX_HTTP_CHATHISTORY_PG_UNREACHABLE);
}


void
ngx_http_chathistory_pg_conn_close(ngx_http_chathistory_pg_conn_t *pc)
{
    ngx_http_chathistory_pg_conn_detach(pc);

    if (pc->result != NULL) {
        PQclear(pc->result);
    }

    PQfinish(pc->pgconn);
    ngx_free(pc);
}


/* The first line of libpq's message: the rest is advice for psql users. */
ngx_str_t *
ngx_http_chathistory_pg_error(PGconn *conn, ngx_str_t *msg)
{
    char  *text;

    text = PQerrorMessage(conn);

    msg->data = (u_char *) text;
    msg->len = strcspn(text, "\n");

    return msg;
}


const char *
ngx_http_chathistory_pg_sqlstate(PGresult *res)
{
    char  *state;

    state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

    return state ? state : "";
}
