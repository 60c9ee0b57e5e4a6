
/*
 * Readiness: whether the database answers, by a round trip through the
 * worker's pool like any request's, bounded by a short timer of its own
 * (a load balancer's probe must not wait the queries' ten seconds).
 */


#include "ngx_http_chathistory_api.h"
#include "ngx_http_chathistory_json.h"
#include "ngx_http_chathistory_statements.h"


#define CH_HEALTH_TIMEOUT  1000


typedef struct {
    ngx_event_t   timer;
    ngx_uint_t    answered;
} ngx_http_chathistory_health_t;


static void ngx_http_chathistory_health_done(
    ngx_http_chathistory_pg_query_t *q, PGresult *res);
static void ngx_http_chathistory_health_timeout(ngx_event_t *ev);
static ngx_int_t ngx_http_chathistory_health_answer(ngx_http_request_t *r,
    ngx_uint_t ready);
static void ngx_http_chathistory_health_cleanup(void *data);


ngx_int_t
ngx_http_chathistory_health(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t               *cln;
    ngx_http_chathistory_health_t    *h;
    ngx_http_chathistory_pg_query_t  *q;

    h = ngx_pcalloc(r->pool, sizeof(ngx_http_chathistory_health_t));
    cln = ngx_pool_cleanup_add(r->pool, 0);

    if (h == NULL || cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    q = ngx_http_chathistory_pg_query_create(r,
                                            NGX_HTTP_CHATHISTORY_SQL_HEALTH,
                                            ngx_http_chathistory_health_done,
                                            h);
    if (q == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_chathistory_health_cleanup;
    cln->data = h;

    h->timer.handler = ngx_http_chathistory_health_timeout;
    h->timer.data = r;
    h->timer.log = r->connection->log;

    /* set first: the pool may answer at once, from its back-off */
    ngx_add_timer(&h->timer, CH_HEALTH_TIMEOUT);

    ngx_http_chathistory_pg_query_run(q);

    return NGX_DONE;
}


static void
ngx_http_chathistory_health_done(ngx_http_chathistory_pg_query_t *q,
    PGresult *res)
{
    ngx_int_t                       rc;
    ngx_uint_t                      ready;
    ngx_http_chathistory_health_t  *h = q->data;

    if (h->answered) {
        return;
    }

    h->answered = 1;

    if (h->timer.timer_set) {
        ngx_del_timer(&h->timer);
    }

    ready = (res != NULL && PQresultStatus(res) == PGRES_TUPLES_OK);

    if (!ready && res != NULL) {
        ngx_log_error(NGX_LOG_ERR, q->request->connection->log, 0,
                      "chathistory: health check failed: %s",
                      PQresultErrorMessage(res));
    }

    rc = ngx_http_chathistory_health_answer(q->request, ready);

    ngx_http_finalize_request(q->request, rc);
}


/* The database did not answer in time: not ready. The query, if it is
 * still out, finishes alone when the request is gone. */
static void
ngx_http_chathistory_health_timeout(ngx_event_t *ev)
{
    ngx_int_t                       rc;
    ngx_connection_t               *c;
    ngx_http_request_t             *r;
    ngx_http_chathistory_health_t  *h;

    r = ev->data;
    c = r->connection;
    h = (ngx_http_chathistory_health_t *) ((u_char *) ev
                              - offsetof(ngx_http_chathistory_health_t, timer));

    h->answered = 1;

    ngx_log_error(NGX_LOG_WARN, c->log, 0,
                  "chathistory: health check: the database did not answer "
                  "within %M ms", (ngx_msec_t) CH_HEALTH_TIMEOUT);

    rc = ngx_http_chathistory_health_answer(r, 0);

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


static ngx_int_t
ngx_http_chathistory_health_answer(ngx_http_request_t *r, ngx_uint_t ready)
{
    static const char  ok[] = "{\"status\":\"ok\",\"database\":\"ok\"}";
    static const char  unavailable[] =
        "{\"status\":\"unavailable\",\"database\":\"unavailable\"}";

    /* a probe's answer must not be cached */
    r->headers_out.last_modified_time = -1;

    return ready
           ? ngx_http_chathistory_send_text(r, NGX_HTTP_OK, ok,
                                            sizeof(ok) - 1)
           : ngx_http_chathistory_send_text(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                            unavailable,
                                            sizeof(unavailable) - 1);
}


static void
ngx_http_chathistory_health_cleanup(void *data)
{
    ngx_http_chathistory_health_t  *h = data;

    if (h->timer.timer_set) {
        ngx_del_timer(&h->timer);
    }
}
