
/*
 * ngx_http_chathistory_capture_module: records the pipeline. A location
 * that proxies the pipeline gets "chathistory_capture on"; a request with
 * ?session_id= of a known session has the upstream's JSON answer copied,
 * as it streams to the client unchanged, and recorded once complete.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_chathistory_module.h"
#include "ngx_http_chathistory_auth.h"
#include "ngx_http_chathistory_json.h"
#include "ngx_http_chathistory_pg.h"
#include "ngx_http_chathistory_record.h"
#include "ngx_http_chathistory_statements.h"
#include "ngx_http_chathistory_counters.h"
#include "ngx_http_chathistory_validate.h"
#include "chathistory_audio.h"


typedef struct {
    ngx_flag_t                     capture;
    size_t                         max_size;
    size_t                         audio_max_size;
    ngx_msec_t                     lookup_timeout;
    ngx_msec_t                     session_cache;
    ngx_http_complex_value_t      *user_id;
} ngx_http_chathistory_capture_conf_t;


typedef enum {
    CH_LOOKUP_PENDING = 0,
    CH_LOOKUP_FOUND,
    CH_LOOKUP_MISSING,
    CH_LOOKUP_FAILED
} ngx_http_chathistory_lookup_e;


/* what a worker remembers of a session it looked up */
typedef struct {
    ngx_http_chathistory_uuid_t    id;
    ngx_msec_t                     expires;
    ngx_http_chathistory_uuid_t    org_id;
    ngx_http_chathistory_lookup_e  lookup;
    ngx_flag_t                     audio_enabled;
    ngx_flag_t                     has_user;
} ngx_http_chathistory_session_seen_t;


typedef struct {
    ngx_http_chathistory_uuid_t    session_id;
    ngx_http_chathistory_uuid_t    message_id;
    ngx_http_chathistory_uuid_t    org_id;
    ngx_http_chathistory_lookup_e  lookup;
    ngx_flag_t                     audio_enabled;
    ngx_event_t                    lookup_timer;

    /* the organization an API key confined the request to, or NULL */
    const char                    *scope_org;

    /* the end user chathistory_capture_user_id names, or NULL */
    const char                    *user_id;
    ngx_flag_t                     has_user;

    u_char                        *copy;
    size_t                         len;
    size_t                         size;

    unsigned                       waiting:1;
    unsigned                       capturing:1;
    unsigned                       overflow:1;
    unsigned                       finished:1;
} ngx_http_chathistory_capture_ctx_t;


static ngx_int_t ngx_http_chathistory_capture_handler(ngx_http_request_t *r);
static void ngx_http_chathistory_capture_looked_up(
    ngx_http_chathistory_pg_query_t *q, PGresult *res);
static ngx_int_t ngx_http_chathistory_capture_recall(ngx_http_request_t *r,
    ngx_http_chathistory_capture_ctx_t *ctx);
static void ngx_http_chathistory_capture_remember(ngx_http_request_t *r,
    ngx_http_chathistory_capture_ctx_t *ctx);
static void ngx_http_chathistory_capture_scope(
    ngx_http_chathistory_capture_ctx_t *ctx);
static void ngx_http_chathistory_capture_lookup_timeout(ngx_event_t *ev);
static void ngx_http_chathistory_capture_resume(ngx_http_request_t *r,
    ngx_http_chathistory_capture_ctx_t *ctx);
static void ngx_http_chathistory_capture_cleanup(void *data);
static ngx_int_t ngx_http_chathistory_capture_header_filter(
    ngx_http_request_t *r);
static const char *ngx_http_chathistory_capture_refuse(ngx_http_request_t *r,
    ngx_http_chathistory_capture_ctx_t *ctx,
    ngx_http_chathistory_stat_e *stat);
static ngx_int_t ngx_http_chathistory_capture_announce(ngx_http_request_t *r,
    ngx_http_chathistory_capture_ctx_t *ctx);
static ngx_int_t ngx_http_chathistory_capture_body_filter(
    ngx_http_request_t *r, ngx_chain_t *in);
static void ngx_http_chathistory_capture_copy(ngx_http_request_t *r,
    ngx_http_chathistory_capture_ctx_t *ctx, ngx_buf_t *b);
static void ngx_http_chathistory_capture_finish(ngx_http_request_t *r,
    ngx_http_chathistory_capture_ctx_t *ctx);
static void ngx_http_chathistory_capture_record(ngx_http_request_t *r,
    ngx_http_chathistory_capture_ctx_t *ctx, cJSON *json);
static void ngx_http_chathistory_capture_audio(ngx_http_request_t *r,
    ngx_http_chathistory_capture_ctx_t *ctx,
    ngx_http_chathistory_record_t *rec);
static ngx_int_t ngx_http_chathistory_capture_body(ngx_http_request_t *r,
    ngx_http_chathistory_record_t *rec);
static ngx_int_t ngx_http_chathistory_capture_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_chathistory_capture_add_variables(ngx_conf_t *cf);
static void *ngx_http_chathistory_capture_create_conf(ngx_conf_t *cf);
static char *ngx_http_chathistory_capture_merge_conf(ngx_conf_t *cf,
    void *parent, void *child);
static ngx_int_t ngx_http_chathistory_capture_init(ngx_conf_t *cf);
static const char *ngx_http_chathistory_capture_user_id(
    ngx_http_request_t *r, ngx_http_chathistory_capture_conf_t *conf);


static ngx_command_t  ngx_http_chathistory_capture_commands[] = {

    { ngx_string("chathistory_capture"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_chathistory_capture_conf_t, capture),
      NULL },

    { ngx_string("chathistory_capture_lookup_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_chathistory_capture_conf_t, lookup_timeout),
      NULL },

    { ngx_string("chathistory_capture_session_cache"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_chathistory_capture_conf_t, session_cache),
      NULL },

    { ngx_string("chathistory_capture_max_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_chathistory_capture_conf_t, max_size),
      NULL },

    { ngx_string("chathistory_capture_audio_max_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_chathistory_capture_conf_t, audio_max_size),
      NULL },

    { ngx_string("chathistory_capture_user_id"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_chathistory_capture_conf_t, user_id),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_chathistory_capture_module_ctx = {
    ngx_http_chathistory_capture_add_variables, /* preconfiguration */
    ngx_http_chathistory_capture_init,     /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_chathistory_capture_create_conf, /* create location conf */
    ngx_http_chathistory_capture_merge_conf   /* merge location conf */
};


ngx_module_t  ngx_http_chathistory_capture_module = {
    NGX_MODULE_V1,
    &ngx_http_chathistory_capture_module_ctx, /* module context */
    ngx_http_chathistory_capture_commands, /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


#define CH_SESSIONS_SEEN  1024

/* a conversation's requests name the same session again and again */
static ngx_http_chathistory_session_seen_t
    ngx_http_chathistory_sessions_seen[CH_SESSIONS_SEEN];


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt    ngx_http_next_body_filter;

static ngx_str_t  ngx_http_chathistory_message_id_header =
    ngx_string("X-Chathistory-Message-Id");


/* for access logs: the session a request named, the message it became */
static ngx_http_variable_t  ngx_http_chathistory_capture_vars[] = {

    { ngx_string("chathistory_session_id"), NULL,
      ngx_http_chathistory_capture_variable,
      offsetof(ngx_http_chathistory_capture_ctx_t, session_id),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("chathistory_message_id"), NULL,
      ngx_http_chathistory_capture_variable,
      offsetof(ngx_http_chathistory_capture_ctx_t, message_id),
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


/*
 * Before the request goes upstream: is its session there, and does it
 * keep audio? The request waits for the answer, a moment at most: when
 * the database is slow, it goes on and the message's write will tell.
 */
static ngx_int_t
ngx_http_chathistory_capture_handler(ngx_http_request_t *r)
{
    ngx_str_t                             value;
    ngx_pool_cleanup_t                   *cln;
    ngx_http_chathistory_pg_query_t      *q;
    ngx_http_chathistory_loc_conf_t      *clcf;
    ngx_http_chathistory_capture_ctx_t   *ctx;
    ngx_http_chathistory_capture_conf_t  *conf;

    conf = ngx_http_get_module_loc_conf(r, ngx_http_chathistory_capture_module);
    clcf = ngx_http_get_module_loc_conf(r, ngx_http_chathistory_module);

    if (!conf->capture || !clcf->history_enabled || r != r->main) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_chathistory_capture_module);

    if (ctx != NULL) {
        /* a write event on the client's connection runs the phases again
         * while the lookup is still out: the request keeps waiting */
        return ctx->waiting ? NGX_DONE : NGX_DECLINED;
    }

    if (ngx_http_chathistory_arg(r, "session_id", &value) != NGX_OK) {
        return NGX_DECLINED;
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_chathistory_capture_ctx_t));
    cln = ngx_pool_cleanup_add(r->pool, 0);

    if (ctx == NULL || cln == NULL) {
        return NGX_DECLINED;
    }

    if (ngx_http_chathistory_uuid_parse(&ctx->session_id, value.data,
                                        value.len)
        != NGX_OK)
    {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "chathistory: session_id is not a UUID, not recording");
        ngx_http_chathistory_count(CH_STAT_CAPTURE_NOT_UUID);
        return NGX_DECLINED;
    }

    ctx->scope_org = ngx_http_chathistory_auth_org(r);
    ctx->user_id = ngx_http_chathistory_capture_user_id(r, conf);

    ngx_http_set_ctx(r, ctx, ngx_http_chathistory_capture_module);

    if (ngx_http_chathistory_capture_recall(r, ctx) == NGX_OK) {
        r->preserve_body = 1;
        return NGX_DECLINED;
    }

    /* the upstream module would close the body's temporary file as soon
     * as the answer starts; the audio is read from it afterwards */
    r->preserve_body = 1;

    cln->handler = ngx_http_chathistory_capture_cleanup;
    cln->data = ctx;

    q = ngx_http_chathistory_pg_query_create(r,
                                      NGX_HTTP_CHATHISTORY_SQL_SESSION_CAPTURE,
                                      ngx_http_chathistory_capture_looked_up,
                                      ctx);
    if (q == NULL) {
        ctx->lookup = CH_LOOKUP_FAILED;
        ctx->audio_enabled = 1;
        return NGX_DECLINED;
    }

    q->values[0] = (char *) ctx->session_id.text;
    q->values[1] = ctx->user_id;
    q->values[2] = ctx->scope_org;
    q->nparams = 3;

    ctx->lookup_timer.handler = ngx_http_chathistory_capture_lookup_timeout;
    ctx->lookup_timer.data = r->connection;
    ctx->lookup_timer.log = r->connection->log;
    ngx_add_timer(&ctx->lookup_timer, conf->lookup_timeout);
    ctx->waiting = 1;

    ngx_http_chathistory_pg_query_run(q);

    /* the phase handler runs again when the answer or the timer comes */
    return NGX_DONE;
}


static void
ngx_http_chathistory_capture_looked_up(ngx_http_chathistory_pg_query_t *q,
    PGresult *res)
{
    ngx_http_chathistory_capture_ctx_t  *ctx = q->data;

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        /* recorded anyway: the spool and the write will tell */
        ctx->lookup = CH_LOOKUP_FAILED;
        ctx->audio_enabled = 1;

    } else if (PQntuples(res) == 0) {
        ctx->lookup = CH_LOOKUP_MISSING;

    } else if (ngx_http_chathistory_uuid_parse(&ctx->org_id,
                   (u_char *) PQgetvalue(res, 0, 1), PQgetlength(res, 0, 1))
               != NGX_OK)
    {
        ctx->lookup = CH_LOOKUP_FAILED;
        ctx->audio_enabled = 1;

    } else {
        ctx->lookup = CH_LOOKUP_FOUND;
        ctx->audio_enabled = (PQgetvalue(res, 0, 0)[0] == 't');
        ctx->has_user = (PQgetvalue(res, 0, 2)[0] == 't');
    }

    if (ctx->lookup != CH_LOOKUP_FAILED) {
        ngx_http_chathistory_capture_remember(q->request, ctx);
    }

    ngx_http_chathistory_capture_scope(ctx);
    ngx_http_chathistory_capture_resume(q->request, ctx);
}


/* A session looked up a moment ago needs no second look. */
static ngx_int_t
ngx_http_chathistory_capture_recall(ngx_http_request_t *r,
    ngx_http_chathistory_capture_ctx_t *ctx)
{
    ngx_http_chathistory_session_seen_t  *seen;

    seen = &ngx_http_chathistory_sessions_seen[
               ngx_hash_key(ctx->session_id.text, NGX_HTTP_CHATHISTORY_UUID_LEN)
               % CH_SESSIONS_SEEN];

    if ((ngx_msec_int_t) (seen->expires - ngx_current_msec) <= 0
        || ngx_strcmp(seen->id.text, ctx->session_id.text) != 0)
    {
        return NGX_DECLINED;
    }

    /* a session without a user_id takes the first one a request names:
     * the lookup gives it */
    if (ctx->user_id != NULL && seen->lookup == CH_LOOKUP_FOUND
        && !seen->has_user)
    {
        return NGX_DECLINED;
    }

    ctx->org_id = seen->org_id;
    ctx->lookup = seen->lookup;
    ctx->audio_enabled = seen->audio_enabled;

    ngx_http_chathistory_capture_scope(ctx);

    return NGX_OK;
}


static void
ngx_http_chathistory_capture_remember(ngx_http_request_t *r,
    ngx_http_chathistory_capture_ctx_t *ctx)
{
    ngx_http_chathistory_session_seen_t  *seen;
    ngx_http_chathistory_capture_conf_t  *conf;

    conf = ngx_http_get_module_loc_conf(r, ngx_http_chathistory_capture_module);

    if (conf->session_cache == 0) {
        return;
    }

    seen = &ngx_http_chathistory_sessions_seen[
               ngx_hash_key(ctx->session_id.text, NGX_HTTP_CHATHISTORY_UUID_LEN)
               % CH_SESSIONS_SEEN];

    seen->id = ctx->session_id;
    seen->org_id = ctx->org_id;
    seen->expires = ngx_current_msec + conf->session_cache;
    seen->lookup = ctx->lookup;
    seen->audio_enabled = ctx->audio_enabled;
    seen->has_user = ctx->has_user;
}


/*
 * A key's request knows only its own organization's sessions: another's
 * is as unknown as one that does not exist, so that nothing is recorded
 * into it and nothing tells it is there. The write checks again.
 */
static void
ngx_http_chathistory_capture_scope(ngx_http_chathistory_capture_ctx_t *ctx)
{
    if (ctx->scope_org != NULL && ctx->lookup == CH_LOOKUP_FOUND
        && ngx_strcmp(ctx->org_id.text, ctx->scope_org) != 0)
    {
        ctx->lookup = CH_LOOKUP_MISSING;
        ctx->audio_enabled = 0;
    }
}


static void
ngx_http_chathistory_capture_lookup_timeout(ngx_event_t *ev)
{
    ngx_connection_t                    *c;
    ngx_http_request_t                  *r;
    ngx_http_chathistory_capture_ctx_t  *ctx;

    c = ev->data;
    r = c->data;
    ctx = ngx_http_get_module_ctx(r, ngx_http_chathistory_capture_module);

    ngx_log_error(NGX_LOG_WARN, c->log, 0,
                  "chathistory: the session lookup took too long, "
                  "recording without it");
    ngx_http_chathistory_count(CH_STAT_CAPTURE_LOOKUP_TIMEOUT);

    ctx->lookup = CH_LOOKUP_FAILED;
    ctx->audio_enabled = 1;

    ngx_http_chathistory_capture_resume(r, ctx);
    ngx_http_run_posted_requests(c);
}


static void
ngx_http_chathistory_capture_resume(ngx_http_request_t *r,
    ngx_http_chathistory_capture_ctx_t *ctx)
{
    if (!ctx->waiting) {
        return;
    }

    ctx->waiting = 0;

    if (ctx->lookup_timer.timer_set) {
        ngx_del_timer(&ctx->lookup_timer);
    }

    ngx_http_core_run_phases(r);
}


static void
ngx_http_chathistory_capture_cleanup(void *data)
{
    ngx_http_chathistory_capture_ctx_t  *ctx = data;

    if (ctx->lookup_timer.timer_set) {
        ngx_del_timer(&ctx->lookup_timer);
    }
}


static ngx_int_t
ngx_http_chathistory_capture_header_filter(ngx_http_request_t *r)
{
    const char                          *why;
    ngx_http_chathistory_stat_e          stat;
    ngx_http_chathistory_capture_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_chathistory_capture_module);

    if (ctx == NULL || r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    why = ngx_http_chathistory_capture_refuse(r, ctx, &stat);

    if (why != NULL) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "chathistory: not recording: %s", why);
        ngx_http_chathistory_count(stat);
        ngx_http_set_ctx(r, NULL, ngx_http_chathistory_capture_module);
        return ngx_http_next_header_filter(r);
    }

    if (ngx_http_chathistory_capture_announce(r, ctx) != NGX_OK) {
        ngx_http_set_ctx(r, NULL, ngx_http_chathistory_capture_module);
    }

    return ngx_http_next_header_filter(r);
}


/* Why this answer is not to be recorded, or NULL; and what to count. */
static const char *
ngx_http_chathistory_capture_refuse(ngx_http_request_t *r,
    ngx_http_chathistory_capture_ctx_t *ctx, ngx_http_chathistory_stat_e *stat)
{
    u_char                               *p, *last;
    ngx_http_chathistory_capture_conf_t  *conf;

    conf = ngx_http_get_module_loc_conf(r, ngx_http_chathistory_capture_module);

    if (ctx->lookup == CH_LOOKUP_MISSING) {
        *stat = CH_STAT_CAPTURE_UNKNOWN_SESSION;
        return "the session does not exist";
    }

    if (r->headers_out.status < 200 || r->headers_out.status > 299) {
        *stat = CH_STAT_CAPTURE_UPSTREAM_STATUS;
        return "the upstream did not answer 2xx";
    }

    if (r->header_only) {
        *stat = CH_STAT_CAPTURE_NO_BODY;
        return "the answer has no body";
    }

    if (r->headers_out.content_encoding
        && r->headers_out.content_encoding->value.len)
    {
        *stat = CH_STAT_CAPTURE_ENCODED;
        return "the answer is encoded";
    }

    if (r->headers_out.content_length_n > (off_t) conf->max_size) {
        *stat = CH_STAT_CAPTURE_TOO_LARGE;
        return "the answer is larger than chathistory_capture_max_size";
    }

    p = r->headers_out.content_type.data;
    last = p + r->headers_out.content_type_len;

    if (p == NULL
        || !((last - p >= 16 && ngx_strncasecmp(p, (u_char *)
                                               "application/json", 16) == 0)
             || ngx_strlcasestrn(p, last, (u_char *) "+json", 5 - 1) != NULL))
    {
        *stat = CH_STAT_CAPTURE_NOT_JSON;
        return "the answer is not JSON";
    }

    return NULL;
}


static ngx_int_t
ngx_http_chathistory_capture_announce(ngx_http_request_t *r,
    ngx_http_chathistory_capture_ctx_t *ctx)
{
    ngx_table_elt_t  *h;

    ngx_http_chathistory_uuid_v7(&ctx->message_id);

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key = ngx_http_chathistory_message_id_header;
    h->value.data = ctx->message_id.text;
    h->value.len = NGX_HTTP_CHATHISTORY_UUID_LEN;

    ctx->capturing = 1;

    return NGX_OK;
}


/* Pass everything on at once; keep a bounded copy on the side. */
static ngx_int_t
ngx_http_chathistory_capture_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in)
{
    ngx_int_t                            rc;
    ngx_uint_t                           last;
    ngx_chain_t                         *cl;
    ngx_http_chathistory_capture_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_chathistory_capture_module);

    if (ctx == NULL || !ctx->capturing || ctx->finished) {
        return ngx_http_next_body_filter(r, in);
    }

    last = 0;

    for (cl = in; cl; cl = cl->next) {
        ngx_http_chathistory_capture_copy(r, ctx, cl->buf);
        last |= cl->buf->last_buf;
    }

    rc = ngx_http_next_body_filter(r, in);

    if (last && rc != NGX_ERROR) {
        ctx->finished = 1;
        ngx_http_chathistory_capture_finish(r, ctx);
    }

    return rc;
}


static void
ngx_http_chathistory_capture_copy(ngx_http_request_t *r,
    ngx_http_chathistory_capture_ctx_t *ctx, ngx_buf_t *b)
{
    u_char                               *p;
    size_t                                n, size;
    ngx_http_chathistory_capture_conf_t  *conf;

    if (ctx->overflow || ngx_buf_special(b)) {
        return;
    }

    if (!ngx_buf_in_memory(b)) {
        /* the upstream's answer went to a temporary file */
        ctx->overflow = 1;
        return;
    }

    conf = ngx_http_get_module_loc_conf(r, ngx_http_chathistory_capture_module);
    n = b->last - b->pos;

    if (ctx->len + n > conf->max_size) {
        ctx->overflow = 1;
        return;
    }

    if (ctx->len + n > ctx->size) {
        size = ngx_min(ngx_max(ctx->size * 2, ctx->len + n), conf->max_size);
        size = ngx_max(size, 4096);

        p = ngx_pnalloc(r->pool, size);
        if (p == NULL) {
            ctx->overflow = 1;
            return;
        }

        if (ctx->len) {
            ngx_memcpy(p, ctx->copy, ctx->len);
        }

        ctx->copy = p;
        ctx->size = size;
    }

    ngx_memcpy(ctx->copy + ctx->len, b->pos, n);
    ctx->len += n;
}


static void
ngx_http_chathistory_capture_finish(ngx_http_request_t *r,
    ngx_http_chathistory_capture_ctx_t *ctx)
{
    cJSON      *json;
    ngx_str_t   text, member;

    if (ctx->overflow) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "chathistory: message %s not recorded: the answer is "
                      "larger than chathistory_capture_max_size or went to "
                      "a temporary file", ctx->message_id.text);
        ngx_http_chathistory_count(CH_STAT_CAPTURE_TOO_LARGE);
        return;
    }

    text.data = ctx->copy;
    text.len = ctx->len;

    /* a text cut short at its \u0000 is not what was said */
    json = (ngx_http_chathistory_json_strings_check(&text, &member)
            == ngx_http_chathistory_json_nul)
           ? NULL : cJSON_ParseWithLength((char *) ctx->copy, ctx->len);

    ngx_http_chathistory_capture_record(r, ctx, json);

    cJSON_Delete(json);
}


static void
ngx_http_chathistory_capture_record(ngx_http_request_t *r,
    ngx_http_chathistory_capture_ctx_t *ctx, cJSON *json)
{
    ngx_http_chathistory_record_t     *rec;
    ngx_http_chathistory_main_conf_t  *cmcf;

    cmcf = ngx_http_get_module_main_conf(r, ngx_http_chathistory_module);

    rec = ngx_http_chathistory_record_create(cmcf);
    if (rec == NULL) {
        return;
    }

    rec->id = ctx->message_id;
    rec->session_id = ctx->session_id;

    if (ctx->scope_org != NULL) {
        ngx_memcpy(rec->org_id.text, ctx->scope_org,
                   NGX_HTTP_CHATHISTORY_UUID_LEN + 1);
    }

    if (json == NULL) {
        ngx_cpystrn((u_char *) rec->reason, (u_char *) "malformed JSON",
                    sizeof(rec->reason));
    }

    if (json == NULL
        || ngx_http_chathistory_record_fields(rec, json) != NGX_OK)
    {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "chathistory: message %s not recorded: the upstream's "
                      "answer has %s", rec->id.text, rec->reason);
        ngx_http_chathistory_count(CH_STAT_CAPTURE_MALFORMED);
        ngx_http_chathistory_record_free(rec);
        return;
    }

    ngx_http_chathistory_count(CH_STAT_CAPTURE_RECORDED);
    ngx_http_chathistory_capture_audio(r, ctx, rec);
    ngx_http_chathistory_record_start(rec);
}


/* The request's body goes along when its session keeps audio. */
static void
ngx_http_chathistory_capture_audio(ngx_http_request_t *r,
    ngx_http_chathistory_capture_ctx_t *ctx,
    ngx_http_chathistory_record_t *rec)
{
    ngx_uint_t                            level;
    const char                           *why;
    ngx_http_chathistory_loc_conf_t      *clcf;
    ngx_http_chathistory_capture_conf_t  *conf;

    if (!ctx->audio_enabled
        || r->request_body == NULL || r->request_body->bufs == NULL)
    {
        /* no body, no audio: nothing worth a word */
        return;
    }

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_chathistory_module);
    conf = ngx_http_get_module_loc_conf(r, ngx_http_chathistory_capture_module);

    if (clcf->audio_storage_path.len == 0) {
        why = "there is no chathistory_audio_storage_path";

    } else if (r->headers_in.content_length_n > (off_t) conf->audio_max_size
               || (r->request_body->temp_file
                   && r->request_body->temp_file->offset
                      > (off_t) conf->audio_max_size))
    {
        /* refused before a byte of it is read into memory */
        why = "its body is larger than chathistory_capture_audio_max_size";

    } else if (ngx_http_chathistory_capture_body(r, rec) != NGX_OK) {
        why = "its body cannot be kept";

    } else {
        rec->storage = clcf->audio_storage_path;
        rec->audio_max = conf->audio_max_size;
        return;
    }

    /* when the lookup failed, the session may well keep no audio */
    level = (ctx->lookup == CH_LOOKUP_FOUND) ? NGX_LOG_WARN : NGX_LOG_INFO;

    ngx_log_error(level, r->connection->log, 0,
                  "chathistory: message %s recorded without audio: %s",
                  rec->id.text, why);
    ngx_http_chathistory_count(CH_STAT_AUDIO_SKIPPED);
}


/*
 * The body outlives the request: memory is copied; nginx's temporary
 * file, already unlinked, is kept open by a descriptor of our own.
 */
static ngx_int_t
ngx_http_chathistory_capture_body(ngx_http_request_t *r,
    ngx_http_chathistory_record_t *rec)
{
    u_char            *p;
    size_t             len;
    ngx_chain_t       *cl;
    ngx_temp_file_t   *tf;
    ngx_table_elt_t   *ct;

    ct = r->headers_in.content_type;

    if (ct != NULL) {
        rec->audio_type.data = ngx_pnalloc(rec->pool, ct->value.len + 1);
        if (rec->audio_type.data == NULL) {
            return NGX_ERROR;
        }

        *ngx_cpymem(rec->audio_type.data, ct->value.data, ct->value.len) = 0;
        rec->audio_type.len = ct->value.len;
    }

    tf = r->request_body->temp_file;

    if (tf != NULL) {
        /* nginx wrote the whole body there once it did not fit */
        rec->audio_fd = dup(tf->file.fd);
        if (rec->audio_fd == NGX_INVALID_FILE) {
            return NGX_ERROR;
        }

        /* how much was written; file.offset also moves when it is read */
        rec->audio_offset = 0;
        rec->audio_len = tf->offset;

        return NGX_OK;
    }

    len = 0;
    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        if (cl->buf->in_file) {
            return NGX_ERROR;
        }

        len += cl->buf->last - cl->buf->pos;
    }

    p = ngx_pnalloc(rec->pool, len ? len : 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    rec->audio = p;
    rec->audio_len = len;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        p = ngx_cpymem(p, cl->buf->pos, cl->buf->last - cl->buf->pos);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_chathistory_capture_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    ngx_http_chathistory_uuid_t         *id;
    ngx_http_chathistory_capture_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r->main, ngx_http_chathistory_capture_module);
    id = ctx ? (ngx_http_chathistory_uuid_t *) ((u_char *) ctx + data) : NULL;

    if (id == NULL || id->text[0] == '\0') {
        v->not_found = 1;
        return NGX_OK;
    }

    v->data = id->text;
    v->len = NGX_HTTP_CHATHISTORY_UUID_LEN;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;

    return NGX_OK;
}


static ngx_int_t
ngx_http_chathistory_capture_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_chathistory_capture_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


/*
 * The end user of a captured request, from chathistory_capture_user_id (a
 * header, an argument, any variable): NULL when unset, empty or not a
 * valid user_id (1 to 200 printable characters), which is logged.
 */
static const char *
ngx_http_chathistory_capture_user_id(ngx_http_request_t *r,
    ngx_http_chathistory_capture_conf_t *conf)
{
    u_char     *p;
    ngx_str_t   value;

    if (conf->user_id == NULL
        || ngx_http_complex_value(r, conf->user_id, &value) != NGX_OK
        || value.len == 0)
    {
        return NULL;
    }

    if (ngx_http_chathistory_user_id_valid(value.data, value.len,
                                   NGX_HTTP_CHATHISTORY_USER_ID_MAX) != NGX_OK)
    {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "chathistory: the request's user_id is not 1 to 200 "
                      "printable characters, not set");
        return NULL;
    }

    p = ngx_pnalloc(r->pool, value.len + 1);
    if (p == NULL) {
        return NULL;
    }

    *ngx_cpymem(p, value.data, value.len) = '\0';

    return (char *) p;
}


static void *
ngx_http_chathistory_capture_create_conf(ngx_conf_t *cf)
{
    ngx_http_chathistory_capture_conf_t  *conf;

    conf = ngx_pcalloc(cf->pool, sizeof(ngx_http_chathistory_capture_conf_t));
    if (conf == NULL) {
        return NULL;
    }

    conf->capture = NGX_CONF_UNSET;
    conf->max_size = NGX_CONF_UNSET_SIZE;
    conf->audio_max_size = NGX_CONF_UNSET_SIZE;
    conf->lookup_timeout = NGX_CONF_UNSET_MSEC;
    conf->session_cache = NGX_CONF_UNSET_MSEC;
    conf->user_id = NGX_CONF_UNSET_PTR;

    return conf;
}


static char *
ngx_http_chathistory_capture_merge_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_http_chathistory_capture_conf_t  *prev = parent;
    ngx_http_chathistory_capture_conf_t  *conf = child;

    ngx_http_chathistory_main_conf_t  *cmcf;

    ngx_conf_merge_value(conf->capture, prev->capture, 0);
    ngx_conf_merge_size_value(conf->max_size, prev->max_size,
                              4 * 1024 * 1024);
    ngx_conf_merge_size_value(conf->audio_max_size, prev->audio_max_size,
                              CHATHISTORY_AUDIO_MAX_INPUT);
    ngx_conf_merge_msec_value(conf->lookup_timeout, prev->lookup_timeout, 500);
    ngx_conf_merge_msec_value(conf->session_cache, prev->session_cache, 5000);
    ngx_conf_merge_ptr_value(conf->user_id, prev->user_id, NULL);

    if (!conf->capture) {
        return NGX_CONF_OK;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_chathistory_module);

    if (cmcf->database_url.len == 0 || cmcf->spool_path.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"chathistory_capture\" requires "
                           "\"chathistory_database_url\" and "
                           "\"chathistory_spool_path\" in the http block");
        return NGX_CONF_ERROR;
    }

    cmcf->capture_used = 1;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_chathistory_capture_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt                *h;
    ngx_http_core_main_conf_t          *core;
    ngx_http_chathistory_main_conf_t   *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_chathistory_module);

    if (!cmcf->capture_used) {
        return NGX_OK;
    }

#if (NGX_THREADS)
    cmcf->thread_pool = ngx_thread_pool_add(cf, &cmcf->thread_pool_name);
    if (cmcf->thread_pool == NULL) {
        return NGX_ERROR;
    }
#else
    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"chathistory_capture\" requires nginx built "
                       "--with-threads");
    return NGX_ERROR;
#endif

    core = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&core->phases[NGX_HTTP_PRECONTENT_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_chathistory_capture_handler;

    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_chathistory_capture_header_filter;

    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_chathistory_capture_body_filter;

    return NGX_OK;
}
