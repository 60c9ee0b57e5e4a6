
/*
 * "chathistory_status;": Prometheus text metrics. Counters live in a
 * shared memory zone, so whichever worker answers speaks for all; the
 * job queue is read from the database, at most once a few seconds per
 * worker.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_chathistory_module.h"
#include "ngx_http_chathistory_api.h"
#include "ngx_http_chathistory_json.h"
#include "ngx_http_chathistory_statements.h"
#include "ngx_http_chathistory_status.h"


#define CH_STATUS_ROUTES       12      /* 0: no route, then the API's */
#define CH_STATUS_WORKERS      256
#define CH_STATUS_JOB_ROWS     32
#define CH_STATUS_JOBS_VALID   5000
#define CH_STATUS_LINE         256     /* longer than any line printed */


typedef struct {
    ngx_pid_t                 pid;
    ngx_atomic_t              connections;
    ngx_atomic_t              busy;
    ngx_atomic_t              waiting;
} ngx_http_chathistory_status_worker_t;


typedef struct {
    ngx_atomic_t              counters[CH_STAT_COUNT];
    ngx_atomic_t              requests[CH_STATUS_ROUTES][32];
    ngx_atomic_t              spool_messages;
    ngx_atomic_t              spool_seen;
    ngx_http_chathistory_status_worker_t  workers[CH_STATUS_WORKERS];
} ngx_http_chathistory_stats_t;


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


static ngx_int_t ngx_http_chathistory_status_zone_init(ngx_shm_zone_t *zone,
    void *data);
static ngx_int_t ngx_http_chathistory_status_log(ngx_http_request_t *r);
static ngx_uint_t ngx_http_chathistory_status_code_index(ngx_uint_t status);
static ngx_int_t ngx_http_chathistory_status_handler(ngx_http_request_t *r);
static void ngx_http_chathistory_status_jobs_read(
    ngx_http_chathistory_pg_query_t *q, PGresult *res);
static ngx_int_t ngx_http_chathistory_status_send(ngx_http_request_t *r);
static u_char *ngx_http_chathistory_status_counters(u_char *p);
static u_char *ngx_http_chathistory_status_requests(u_char *p);
static u_char *ngx_http_chathistory_status_route(u_char *p, const char *pat);
static u_char *ngx_http_chathistory_status_gauges(u_char *p);
static u_char *ngx_http_chathistory_status_jobs(u_char *p);
static u_char *ngx_http_chathistory_status_head(u_char *p, const char *name,
    const char *type, const char *help);


static ngx_shm_zone_t                *ngx_http_chathistory_status_shm;
static ngx_http_chathistory_stats_t  *ngx_http_chathistory_stats;
static ngx_http_chathistory_status_worker_t
                                     *ngx_http_chathistory_status_self;

/* this worker's last reading of the job queue */
static ngx_http_chathistory_status_jobs_t
                  ngx_http_chathistory_jobs[CH_STATUS_JOB_ROWS];
static ngx_uint_t ngx_http_chathistory_njobs;
static ngx_msec_t ngx_http_chathistory_jobs_read_at;
static ngx_uint_t ngx_http_chathistory_jobs_ok;


static ngx_str_t  ngx_http_chathistory_status_zone_name =
    ngx_string("chathistory_status");


static const ngx_uint_t  ngx_http_chathistory_status_codes[] = {
    200, 201, 204, 206, 304, 400, 401, 403, 404, 405, 408, 409, 411, 412,
    413, 414, 415, 416, 429, 431, 444, 499, 500, 501, 502, 503, 504, 0
};


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


ngx_int_t
ngx_http_chathistory_status_zone(ngx_conf_t *cf)
{
    ngx_shm_zone_t                    *zone;
    ngx_http_handler_pt               *h;
    ngx_http_core_main_conf_t         *cmcf;
    ngx_http_chathistory_main_conf_t  *chmcf;

    /* a reload may leave nothing to count */
    ngx_http_chathistory_status_shm = NULL;

    chmcf = ngx_http_conf_get_module_main_conf(cf,
                                               ngx_http_chathistory_module);

    if (chmcf->database_url.len == 0 && !chmcf->status_used) {
        return NGX_OK;
    }

    zone = ngx_shared_memory_add(cf, &ngx_http_chathistory_status_zone_name,
                                 4 * ngx_pagesize
                                 + sizeof(ngx_http_chathistory_stats_t),
                                 &ngx_http_chathistory_module);
    if (zone == NULL) {
        return NGX_ERROR;
    }

    zone->init = ngx_http_chathistory_status_zone_init;
    ngx_http_chathistory_status_shm = zone;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_chathistory_status_log;

    return NGX_OK;
}


/* The counters outlive a reload: a zone of the same size is kept. */
static ngx_int_t
ngx_http_chathistory_status_zone_init(ngx_shm_zone_t *zone, void *data)
{
    ngx_slab_pool_t  *shpool;

    if (data) {
        zone->data = data;
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) zone->shm.addr;

    zone->data = ngx_slab_calloc(shpool, sizeof(ngx_http_chathistory_stats_t));
    if (zone->data == NULL) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_chathistory_status_init_process(ngx_cycle_t *cycle)
{
    if (ngx_http_chathistory_status_shm == NULL) {
        return NGX_OK;
    }

    ngx_http_chathistory_stats = ngx_http_chathistory_status_shm->data;

    if (ngx_worker < CH_STATUS_WORKERS) {
        ngx_http_chathistory_status_self =
                               &ngx_http_chathistory_stats->workers[ngx_worker];
        ngx_memzero(ngx_http_chathistory_status_self,
                    sizeof(ngx_http_chathistory_status_worker_t));
        ngx_http_chathistory_status_self->pid = ngx_pid;
    }

    return NGX_OK;
}


void
ngx_http_chathistory_status_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_chathistory_status_worker_t  *self;

    self = ngx_http_chathistory_status_self;

    /* after a reload, a new worker may have the slot already */
    if (self && self->pid == ngx_pid) {
        ngx_memzero(self, sizeof(ngx_http_chathistory_status_worker_t));
    }

    ngx_http_chathistory_status_self = NULL;
}


void
ngx_http_chathistory_status_count(ngx_http_chathistory_stat_e what)
{
    if (ngx_http_chathistory_stats) {
        (void) ngx_atomic_fetch_add(&ngx_http_chathistory_stats->counters[what],
                                    1);
    }
}


/* This worker's pool, as it is now. */
void
ngx_http_chathistory_status_pool(ngx_http_chathistory_pg_pool_t *pool)
{
    ngx_http_chathistory_status_worker_t  *self;

    self = ngx_http_chathistory_status_self;

    if (self == NULL || self->pid != ngx_pid) {
        return;
    }

    self->connections = pool->nconns;
    self->busy = pool->nconns - pool->nidle;
    self->waiting = pool->nwaiting;
}


void
ngx_http_chathistory_status_spool(ngx_uint_t messages)
{
    if (ngx_http_chathistory_stats) {
        ngx_http_chathistory_stats->spool_messages = messages;
        ngx_http_chathistory_stats->spool_seen = 1;
    }
}


/* Requests to the API, by route and status, when they are done. */
static ngx_int_t
ngx_http_chathistory_status_log(ngx_http_request_t *r)
{
    ngx_uint_t                        route, status;
    ngx_http_chathistory_api_ctx_t   *ctx;
    ngx_http_chathistory_loc_conf_t  *clcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_chathistory_module);

    if (!clcf->api || ngx_http_chathistory_stats == NULL) {
        return NGX_OK;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_chathistory_module);
    route = ctx ? ctx->route : 0;

    if (route >= CH_STATUS_ROUTES) {
        route = 0;
    }

    if (r->err_status) {
        status = r->err_status;

    } else {
        status = r->headers_out.status;
    }

    (void) ngx_atomic_fetch_add(&ngx_http_chathistory_stats->requests[route]
                          [ngx_http_chathistory_status_code_index(status)], 1);

    return NGX_OK;
}


/* the last index, of the 0 that ends the list, stands for all others */
static ngx_uint_t
ngx_http_chathistory_status_code_index(ngx_uint_t status)
{
    ngx_uint_t  i;

    for (i = 0; ngx_http_chathistory_status_codes[i]; i++) {
        if (ngx_http_chathistory_status_codes[i] == status) {
            break;
        }
    }

    return i;
}


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
        || (ngx_http_chathistory_jobs_read_at
            && ngx_current_msec - ngx_http_chathistory_jobs_read_at
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
    int                                  i, n;
    ngx_http_chathistory_status_jobs_t  *job;

    ngx_http_chathistory_jobs_read_at = ngx_current_msec;
    ngx_http_chathistory_jobs_ok = 0;

    if (res != NULL && PQresultStatus(res) == PGRES_TUPLES_OK) {
        ngx_http_chathistory_jobs_ok = 1;
        ngx_http_chathistory_njobs = 0;

        n = ngx_min(PQntuples(res), CH_STATUS_JOB_ROWS);

        for (i = 0; i < n; i++) {
            job = &ngx_http_chathistory_jobs[ngx_http_chathistory_njobs];

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

            ngx_http_chathistory_njobs++;
        }
    }

    ngx_http_finalize_request(q->request,
                              ngx_http_chathistory_status_send(q->request));
}


static ngx_int_t
ngx_http_chathistory_status_send(ngx_http_request_t *r)
{
    size_t       size;
    ngx_int_t    rc;
    ngx_buf_t   *b;
    ngx_chain_t  out;

    size = (CH_STAT_COUNT + CH_STATUS_ROUTES
            * (sizeof(ngx_http_chathistory_status_codes) / sizeof(ngx_uint_t))
            + 3 * CH_STATUS_JOB_ROWS + 64)
           * CH_STATUS_LINE;

    b = ngx_create_temp_buf(r->pool, size);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_chathistory_stats) {
        b->last = ngx_http_chathistory_status_counters(b->last);
        b->last = ngx_http_chathistory_status_requests(b->last);
        b->last = ngx_http_chathistory_status_gauges(b->last);
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
ngx_http_chathistory_status_counters(u_char *p)
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
                        ngx_http_chathistory_stats->counters[i]);
    }

    return p;
}


static u_char *
ngx_http_chathistory_status_requests(u_char *p)
{
    ngx_uint_t     i, route, code;
    ngx_atomic_t   n;
    const char    *pattern;

    p = ngx_http_chathistory_status_head(p, "chathistory_requests_total",
            "counter", "Requests to chathistory_api locations, by route and "
                       "status (route \"none\": none matched or the request "
                       "ended before routing).");

    for (route = 0; route < CH_STATUS_ROUTES; route++) {

        pattern = route ? ngx_http_chathistory_api_route_pattern(route) : "";

        if (pattern == NULL) {
            break;
        }

        for (i = 0; i == 0 || ngx_http_chathistory_status_codes[i - 1]; i++) {
            n = ngx_http_chathistory_stats->requests[route][i];

            if (n == 0) {
                continue;
            }

            p = ngx_cpymem(p, "chathistory_requests_total{route=\"",
                           sizeof("chathistory_requests_total{route=\"") - 1);
            p = ngx_http_chathistory_status_route(p, pattern);

            code = ngx_http_chathistory_status_codes[i];
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
ngx_http_chathistory_status_gauges(u_char *p)
{
    ngx_uint_t                             i, conns, busy, waiting;
    ngx_http_chathistory_status_worker_t  *w;

    conns = 0;
    busy = 0;
    waiting = 0;

    for (i = 0; i < CH_STATUS_WORKERS; i++) {
        w = &ngx_http_chathistory_stats->workers[i];

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

    if (ngx_http_chathistory_stats->spool_seen) {
        p = ngx_http_chathistory_status_head(p, "chathistory_spool_messages",
                "gauge", "Messages in the spool, waiting for the database.");
        p = ngx_sprintf(p, "chathistory_spool_messages %uA\n",
                        ngx_http_chathistory_stats->spool_messages);
    }

    return p;
}


static u_char *
ngx_http_chathistory_status_jobs(u_char *p)
{
    ngx_uint_t                           i;
    ngx_http_chathistory_status_jobs_t  *job;

    p = ngx_http_chathistory_status_head(p, "chathistory_jobs_read_ok",
            "gauge", "Whether the last reading of the job queue from the "
                     "database succeeded.");
    p = ngx_sprintf(p, "chathistory_jobs_read_ok %ui\n",
                    ngx_http_chathistory_jobs_ok);

    if (!ngx_http_chathistory_jobs_ok) {
        return p;
    }

    p = ngx_http_chathistory_status_head(p, "chathistory_jobs",
            "gauge", "Jobs for chathistory-worker, by kind and state.");

    for (i = 0; i < ngx_http_chathistory_njobs; i++) {
        job = &ngx_http_chathistory_jobs[i];
        p = ngx_sprintf(p, "chathistory_jobs{kind=\"%s\",state=\"%s\"} %ui\n",
                        job->kind, job->state, job->count);
    }

    p = ngx_http_chathistory_status_head(p, "chathistory_jobs_lag_seconds",
            "gauge", "Age of the oldest queued job that is due, by kind.");

    for (i = 0; i < ngx_http_chathistory_njobs; i++) {
        job = &ngx_http_chathistory_jobs[i];

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
