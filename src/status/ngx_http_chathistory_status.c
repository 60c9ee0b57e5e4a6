
/*
 * "chathistory_status;": Prometheus text metrics. What every part counted
 * (the counters' shared zone, so whichever worker answers speaks for all),
 * the API's requests by route, and the job queue, read from the database
 * at most once a few seconds per worker.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_chathistory_module.h"
#include "ngx_http_chathistory_api.h"
#include "ngx_http_chathistory_counters.h"
#include "ngx_http_chathistory_pg.h"
#include "ngx_http_chathistory_statements.h"
#include "ngx_http_chathistory_status.h"


#define CH_STATUS_JOB_ROWS     32
#define CH_STATUS_JOBS_VALID   5000
#define CH_STATUS_LINE         256     /* longer than any line printed */


typedef struct {
    u_char                    kind[32];
    u_char                    state[16];
    ngx_uint_t                count;
    double                    lag;
} ngx_http_chathistory_status_jobs_t;


typedef struct {
    const char               *name;
    const char               *type;
    const char               *help;
    const char               *labels;
} ngx_http_chathistory_metric_t;


static ngx_int_t ngx_http_chathistory_status_handler(ngx_http_request_t *r);
static void ngx_http_chathistory_status_jobs_read(
    ngx_http_chathistory_pg_query_t *q, PGresult *res);
static ngx_int_t ngx_http_chathistory_status_send(ngx_http_request_t *r);
static u_char *ngx_http_chathistory_status_counters(u_char *p,
    ngx_http_chathistory_counted_t *counted);
static u_char *ngx_http_chathistory_status_requests(u_char *p,
    ngx_http_chathistory_counted_t *counted);
static u_char *ngx_http_chathistory_status_route(u_char *p, const char *pat);
static u_char *ngx_http_chathistory_status_gauges(u_char *p,
    ngx_http_chathistory_counted_t *counted);
static u_char *ngx_http_chathistory_status_jobs(u_char *p);
static u_char *ngx_http_chathistory_status_head(u_char *p, const char *name,
    const char *type, const char *help);


/* this worker's last reading of the job queue */
typedef struct {
    ngx_http_chathistory_status_jobs_t   rows[CH_STATUS_JOB_ROWS];
    ngx_uint_t                           n;
    ngx_msec_t                           read_at;
    ngx_uint_t                           ok;
} ngx_http_chathistory_status_queue_t;


static ngx_http_chathistory_status_queue_t  ngx_http_chathistory_jobs;


/* in the order of ngx_http_chathistory_stat_e; one HELP per name */
static const ngx_http_chathistory_metric_t  ngx_http_chathistory_metrics[] = {

    { "chathistory_capture_total", "counter",
      "Pipeline answers seen by chathistory_capture, by what became of them.",
      "outcome=\"recorded\"" },
    { NULL, NULL, NULL, "outcome=\"session_id_not_uuid\"" },
    { NULL, NULL, NULL, "outcome=\"unknown_session\"" },
    { NULL, NULL, NULL, "outcome=\"upstream_not_2xx\"" },
    { NULL, NULL, NULL, "outcome=\"no_body\"" },
    { NULL, NULL, NULL, "outcome=\"encoded\"" },
    { NULL, NULL, NULL, "outcome=\"too_large\"" },
    { NULL, NULL, NULL, "outcome=\"not_json\"" },
    { NULL, NULL, NULL, "outcome=\"malformed\"" },
    { NULL, NULL, NULL, "outcome=\"lookup_timeout\"" },

    { "chathistory_messages_total", "counter",
      "Recorded messages, by where they went.",
      "outcome=\"stored\"" },
    { NULL, NULL, NULL, "outcome=\"spooled\"" },
    { NULL, NULL, NULL, "outcome=\"replayed\"" },
    { NULL, NULL, NULL, "outcome=\"session_gone\"" },
    { NULL, NULL, NULL, "outcome=\"rejected\"" },
    { NULL, NULL, NULL, "outcome=\"lost\"" },

    { "chathistory_message_batches_total", "counter",
      "Statements that stored recorded messages, each a batch of them.",
      "" },

    { "chathistory_audio_total", "counter",
      "Input audio of recorded messages, stored as Ogg Opus or skipped.",
      "outcome=\"stored\"" },
    { NULL, NULL, NULL, "outcome=\"skipped\"" },

    { "chathistory_database_queries_total", "counter",
      "Statements sent to PostgreSQL or refused before, by outcome.",
      "outcome=\"ok\"" },
    { NULL, NULL, NULL, "outcome=\"error\"" },
    { NULL, NULL, NULL, "outcome=\"unreachable\"" },
    { NULL, NULL, NULL, "outcome=\"queue_full\"" },
    { NULL, NULL, NULL, "outcome=\"timeout\"" },

    { "chathistory_database_waits_total", "counter",
      "Statements that waited for a free connection.", "" },

    { "chathistory_database_connects_total", "counter",
      "Connections to PostgreSQL opened, by outcome.",
      "outcome=\"ok\"" },
    { NULL, NULL, NULL, "outcome=\"failed\"" },
};


typedef char ngx_http_chathistory_metrics_complete[
    sizeof(ngx_http_chathistory_metrics)
    / sizeof(ngx_http_chathistory_metrics[0]) == CH_STAT_COUNT ? 1 : -1];


char *
ngx_http_chathistory_status(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t          *core;
    ngx_http_chathistory_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_chathistory_module);
    cmcf->status_used = 1;

    core = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    core->handler = ngx_http_chathistory_status_handler;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_chathistory_status_handler(ngx_http_request_t *r)
{
    ngx_int_t                          rc;
    ngx_http_chathistory_pg_query_t   *q;
    ngx_http_chathistory_main_conf_t  *cmcf;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_chathistory_module);

    if (cmcf->database_url.len == 0
        || (ngx_http_chathistory_jobs.read_at
            && ngx_current_msec - ngx_http_chathistory_jobs.read_at
               < CH_STATUS_JOBS_VALID))
    {
        return ngx_http_chathistory_status_send(r);
    }

    q = ngx_http_chathistory_pg_query_create(r,
                                    NGX_HTTP_CHATHISTORY_SQL_STATUS_JOBS,
                                    ngx_http_chathistory_status_jobs_read,
                                    NULL);
    if (q == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->main->count++;
    ngx_http_chathistory_pg_query_run(q);

    return NGX_DONE;
}


static void
ngx_http_chathistory_status_jobs_read(ngx_http_chathistory_pg_query_t *q,
    PGresult *res)
{
    int                                   i, n;
    ngx_http_chathistory_status_jobs_t   *job;
    ngx_http_chathistory_status_queue_t  *jobs;

    jobs = &ngx_http_chathistory_jobs;
    jobs->read_at = ngx_current_msec;
    jobs->ok = 0;

    if (res != NULL && PQresultStatus(res) == PGRES_TUPLES_OK) {
        jobs->ok = 1;
        jobs->n = 0;

        n = ngx_min(PQntuples(res), CH_STATUS_JOB_ROWS);

        for (i = 0; i < n; i++) {
            job = &jobs->rows[jobs->n];

            /* label values: the worker's own names, kept to what is safe */
            if (PQgetlength(res, i, 0) >= (int) sizeof(job->kind)
                || PQgetlength(res, i, 1) >= (int) sizeof(job->state)
                || strspn(PQgetvalue(res, i, 0),
                          "abcdefghijklmnopqrstuvwxyz0123456789_")
                   != (size_t) PQgetlength(res, i, 0))
            {
                continue;
            }

            ngx_cpystrn(job->kind, (u_char *) PQgetvalue(res, i, 0),
                        sizeof(job->kind));
            ngx_cpystrn(job->state, (u_char *) PQgetvalue(res, i, 1),
                        sizeof(job->state));
            job->count = ngx_atoi((u_char *) PQgetvalue(res, i, 2),
                                  PQgetlength(res, i, 2));
            job->lag = strtod(PQgetvalue(res, i, 3), NULL);

            jobs->n++;
        }
    }

    ngx_http_finalize_request(q->request,
                              ngx_http_chathistory_status_send(q->request));
}


static ngx_int_t
ngx_http_chathistory_status_send(ngx_http_request_t *r)
{
    size_t                           size;
    ngx_int_t                        rc;
    ngx_buf_t                       *b;
    ngx_chain_t                      out;
    ngx_http_chathistory_counted_t  *counted;

    size = (CH_STAT_COUNT + NGX_HTTP_CHATHISTORY_COUNTED_ROUTES
            * NGX_HTTP_CHATHISTORY_COUNTED_CODES
            + 3 * CH_STATUS_JOB_ROWS + 64)
           * CH_STATUS_LINE;

    b = ngx_create_temp_buf(r->pool, size);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    counted = ngx_http_chathistory_counted();

    if (counted) {
        b->last = ngx_http_chathistory_status_counters(b->last, counted);
        b->last = ngx_http_chathistory_status_requests(b->last, counted);
        b->last = ngx_http_chathistory_status_gauges(b->last, counted);
    }

    b->last = ngx_http_chathistory_status_jobs(b->last);
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = b->last - b->pos;
    ngx_str_set(&r->headers_out.content_type, "text/plain; version=0.0.4");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


static u_char *
ngx_http_chathistory_status_counters(u_char *p,
    ngx_http_chathistory_counted_t *counted)
{
    ngx_uint_t                            i;
    const char                           *name;
    const ngx_http_chathistory_metric_t  *m;

    name = NULL;

    for (i = 0; i < CH_STAT_COUNT; i++) {
        m = &ngx_http_chathistory_metrics[i];

        if (m->name) {
            name = m->name;
            p = ngx_http_chathistory_status_head(p, name, m->type, m->help);
        }

        p = ngx_sprintf(p, m->labels[0] ? "%s{%s} %uA\n" : "%s%s %uA\n",
                        name, m->labels,
                        counted->counters[i]);
    }

    return p;
}


static u_char *
ngx_http_chathistory_status_requests(u_char *p,
    ngx_http_chathistory_counted_t *counted)
{
    ngx_uint_t     i, route, code;
    ngx_atomic_t   n;
    const char    *pattern;

    p = ngx_http_chathistory_status_head(p, "chathistory_requests_total",
            "counter", "Requests to chathistory_api locations, by route and "
                       "status (route \"none\": none matched or the request "
                       "ended before routing).");

    for (route = 0; route < NGX_HTTP_CHATHISTORY_COUNTED_ROUTES; route++) {

        pattern = route ? ngx_http_chathistory_api_route_pattern(route) : "";

        if (pattern == NULL) {
            break;
        }

        for (i = 0; i < NGX_HTTP_CHATHISTORY_COUNTED_CODES; i++) {
            n = counted->requests[route][i];

            if (n == 0) {
                continue;
            }

            p = ngx_cpymem(p, "chathistory_requests_total{route=\"",
                           sizeof("chathistory_requests_total{route=\"") - 1);
            p = ngx_http_chathistory_status_route(p, pattern);

            code = ngx_http_chathistory_counted_code(i);
            p = code ? ngx_sprintf(p, "\",status=\"%ui\"} %uA\n", code, n)
                     : ngx_sprintf(p, "\",status=\"other\"} %uA\n", n);
        }
    }

    return p;
}


/* "sessions/:s/messages" is "/sessions/{session_id}/messages" */
static u_char *
ngx_http_chathistory_status_route(u_char *p, const char *pat)
{
    if (*pat == '\0') {
        return ngx_cpymem(p, "none", 4);
    }

    *p++ = '/';

    while (*pat) {
        if (pat[0] == ':' && pat[1] == 's') {
            p = ngx_cpymem(p, "{session_id}", 12);
            pat += 2;

        } else if (pat[0] == ':' && pat[1] == 'm') {
            p = ngx_cpymem(p, "{message_id}", 12);
            pat += 2;

        } else {
            *p++ = *pat++;
        }
    }

    return p;
}


static u_char *
ngx_http_chathistory_status_gauges(u_char *p,
    ngx_http_chathistory_counted_t *counted)
{
    ngx_uint_t                              i, conns, busy, waiting;
    ngx_http_chathistory_counted_worker_t  *w;

    conns = 0;
    busy = 0;
    waiting = 0;

    for (i = 0; i < NGX_HTTP_CHATHISTORY_COUNTED_WORKERS; i++) {
        w = &counted->workers[i];

        if (w->pid) {
            conns += w->connections;
            busy += w->busy;
            waiting += w->waiting;
        }
    }

    p = ngx_http_chathistory_status_head(p, "chathistory_database_connections",
            "gauge", "Open PostgreSQL connections of all workers, by state.");
    p = ngx_sprintf(p, "chathistory_database_connections{state=\"busy\"} %ui\n"
                       "chathistory_database_connections{state=\"idle\"} %ui\n",
                    busy, conns - busy);

    p = ngx_http_chathistory_status_head(p, "chathistory_database_waiting",
            "gauge", "Statements waiting for a free connection now.");
    p = ngx_sprintf(p, "chathistory_database_waiting %ui\n", waiting);

    if (counted->spool_seen) {
        p = ngx_http_chathistory_status_head(p, "chathistory_spool_messages",
                "gauge", "Messages in the spool, waiting for the database.");
        p = ngx_sprintf(p, "chathistory_spool_messages %uA\n",
                        counted->spool_messages);
    }

    return p;
}


static u_char *
ngx_http_chathistory_status_jobs(u_char *p)
{
    ngx_uint_t                            i;
    ngx_http_chathistory_status_jobs_t   *job;
    ngx_http_chathistory_status_queue_t  *jobs;

    jobs = &ngx_http_chathistory_jobs;

    p = ngx_http_chathistory_status_head(p, "chathistory_jobs_read_ok",
            "gauge", "Whether the last reading of the job queue from the "
                     "database succeeded.");
    p = ngx_sprintf(p, "chathistory_jobs_read_ok %ui\n", jobs->ok);

    if (!jobs->ok) {
        return p;
    }

    p = ngx_http_chathistory_status_head(p, "chathistory_jobs",
            "gauge", "Jobs for chathistory-worker, by kind and state.");

    for (i = 0; i < jobs->n; i++) {
        job = &jobs->rows[i];
        p = ngx_sprintf(p, "chathistory_jobs{kind=\"%s\",state=\"%s\"} %ui\n",
                        job->kind, job->state, job->count);
    }

    p = ngx_http_chathistory_status_head(p, "chathistory_jobs_lag_seconds",
            "gauge", "Age of the oldest queued job that is due, by kind.");

    for (i = 0; i < jobs->n; i++) {
        job = &jobs->rows[i];

        if (ngx_strcmp(job->state, "queued") == 0) {
            p = ngx_sprintf(p, "chathistory_jobs_lag_seconds{kind=\"%s\"} "
                               "%.3f\n", job->kind, job->lag);
        }
    }

    return p;
}


static u_char *
ngx_http_chathistory_status_head(u_char *p, const char *name,
    const char *type, const char *help)
{
    return ngx_sprintf(p, "# HELP %s %s\n# TYPE %s %s\n",
                       name, help, name, type);
}
