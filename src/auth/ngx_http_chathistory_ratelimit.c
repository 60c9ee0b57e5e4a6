
/*
 * ngx_http_chathistory_ratelimit_module: a limit per key (an organization)
 * and fixed window that holds across nginx hosts. Each host counts in a
 * shared memory zone, as limit_req does, and every "sync" interval one of
 * its workers adds what it admitted to a row per zone, key and window in
 * PostgreSQL and reads back the total of all hosts, asynchronously through
 * the pool. A request never waits for the database: it is admitted while
 * the count known here (the last total plus what this host admitted since)
 * is under the limit.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_chathistory_module.h"
#include "ngx_http_chathistory_json.h"
#include "ngx_http_chathistory_pg.h"
#include "ngx_http_chathistory_statements.h"


#define CH_RL_KEY_MAX     255
/* keys per sync statement; the most recently used go first */
#define CH_RL_SYNC_MAX    512
/* a sync that has not answered by then no longer holds the zone's turn */
#define CH_RL_SYNC_LEASE  10000


typedef struct {
    ngx_rbtree_node_t                   node;   /* key: crc32 of the key */
    ngx_queue_t                         queue;  /* most recently used first */
    int64_t                             window;
    /* the window's total in the database at the last sync */
    ngx_uint_t                          synced;
    /* admitted here and not sent yet; sent and not answered yet */
    ngx_uint_t                          pending;
    ngx_uint_t                          inflight;
    u_short                             len;
    u_char                              data[1];
} ngx_http_chathistory_rl_node_t;


typedef struct {
    ngx_rbtree_t                        rbtree;
    ngx_rbtree_node_t                   sentinel;
    ngx_queue_t                         queue;
    ngx_msec_t                          next_sync;
    ngx_msec_t                          busy_until;
} ngx_http_chathistory_rl_shctx_t;


typedef struct {
    ngx_http_chathistory_rl_shctx_t    *sh;
    ngx_slab_pool_t                    *shpool;
    ngx_shm_zone_t                     *shm_zone;
    ngx_http_complex_value_t            key;
    ngx_uint_t                          limit;
    ngx_msec_t                          window;    /* 1 s, 1 min or 1 h */
    ngx_msec_t                          sync;
    ngx_event_t                         timer;     /* this worker's */
    /* this worker's last sync failed: said once, not every interval */
    ngx_flag_t                          failing;
} ngx_http_chathistory_rl_zone_t;


typedef struct {
    ngx_array_t                         zones;     /* of rl_zone_t * */
} ngx_http_chathistory_rl_main_conf_t;


typedef struct {
    ngx_shm_zone_t                     *shm_zone;  /* NULL: off */
} ngx_http_chathistory_rl_loc_conf_t;


/* one sync: what it sent, to take back from "inflight" when it answers */
typedef struct {
    ngx_pool_t                         *pool;
    ngx_http_chathistory_rl_zone_t     *zone;
    int64_t                             window;
    ngx_uint_t                          n;
    ngx_str_t                          *keys;
    ngx_uint_t                         *deltas;
    u_char                              window_text[NGX_INT64_LEN + 1];
    u_char                              window_ms[NGX_INT64_LEN + 1];
} ngx_http_chathistory_rl_sync_t;


static ngx_int_t ngx_http_chathistory_rl_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_chathistory_rl_count(ngx_http_request_t *r,
    ngx_http_chathistory_rl_zone_t *zone, ngx_str_t *key, int64_t window,
    ngx_uint_t *count);
static ngx_int_t ngx_http_chathistory_rl_headers(ngx_http_request_t *r,
    ngx_http_chathistory_rl_zone_t *zone, ngx_uint_t count,
    ngx_msec_t reset, ngx_uint_t refused);
static ngx_int_t ngx_http_chathistory_rl_header(ngx_http_request_t *r,
    char *name, ngx_uint_t value);
static ngx_int_t ngx_http_chathistory_rl_refuse(ngx_http_request_t *r);
static int64_t ngx_http_chathistory_rl_now(void);
static void ngx_http_chathistory_rl_timer(ngx_event_t *ev);
static void ngx_http_chathistory_rl_sync(ngx_http_chathistory_rl_zone_t *zone,
    ngx_uint_t hurry);
static ngx_int_t ngx_http_chathistory_rl_collect(
    ngx_http_chathistory_rl_sync_t *s, int64_t window);
static u_char *ngx_http_chathistory_rl_array(ngx_pool_t *pool,
    ngx_http_chathistory_rl_sync_t *s, ngx_uint_t keys);
static void ngx_http_chathistory_rl_synced(ngx_http_chathistory_pg_query_t *q,
    PGresult *res);
static void ngx_http_chathistory_rl_settle(ngx_http_chathistory_rl_sync_t *s,
    PGresult *res);
static ngx_http_chathistory_rl_node_t *ngx_http_chathistory_rl_known(
    ngx_http_chathistory_rl_zone_t *zone, u_char *data, size_t len,
    int64_t window);
static ngx_http_chathistory_rl_node_t *ngx_http_chathistory_rl_find(
    ngx_http_chathistory_rl_shctx_t *sh, u_char *data, size_t len,
    uint32_t hash);
static ngx_http_chathistory_rl_node_t *ngx_http_chathistory_rl_alloc(
    ngx_http_chathistory_rl_zone_t *zone, size_t len, int64_t window);
static void ngx_http_chathistory_rl_expire(
    ngx_http_chathistory_rl_zone_t *zone, int64_t window, ngx_uint_t force);
static void ngx_http_chathistory_rl_rbtree_insert_value(
    ngx_rbtree_node_t *temp, ngx_rbtree_node_t *node,
    ngx_rbtree_node_t *sentinel);
static ngx_int_t ngx_http_chathistory_rl_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static void *ngx_http_chathistory_rl_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_chathistory_rl_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_chathistory_rl_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);
static ngx_int_t ngx_http_chathistory_rl_init(ngx_conf_t *cf);
static ngx_int_t ngx_http_chathistory_rl_init_process(ngx_cycle_t *cycle);
static char *ngx_http_chathistory_rl_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_http_chathistory_rl_parse_rate(ngx_str_t *s,
    ngx_uint_t *limit, ngx_msec_t *window);
static char *ngx_http_chathistory_rl_limit(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


static ngx_command_t  ngx_http_chathistory_rl_commands[] = {

    { ngx_string("chathistory_rate_limit_zone"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_2MORE,
      ngx_http_chathistory_rl_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("chathistory_rate_limit"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_chathistory_rl_limit,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_chathistory_ratelimit_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_http_chathistory_rl_init,          /* postconfiguration */

    ngx_http_chathistory_rl_create_main_conf, /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_chathistory_rl_create_loc_conf, /* create location conf */
    ngx_http_chathistory_rl_merge_loc_conf   /* merge location conf */
};


ngx_module_t  ngx_http_chathistory_ratelimit_module = {
    NGX_MODULE_V1,
    &ngx_http_chathistory_ratelimit_module_ctx, /* module context */
    ngx_http_chathistory_rl_commands,      /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_chathistory_rl_init_process,  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


/*
 * Count the request in its key's window; answer 429 when the count known
 * here has reached the limit. An empty key is not counted.
 */
static ngx_int_t
ngx_http_chathistory_rl_handler(ngx_http_request_t *r)
{
    int64_t                              now, window;
    ngx_int_t                            rc;
    ngx_str_t                            key;
    ngx_uint_t                           count;
    ngx_msec_t                           reset;
    ngx_http_chathistory_rl_zone_t      *zone;
    ngx_http_chathistory_rl_loc_conf_t  *rlcf;

    rlcf = ngx_http_get_module_loc_conf(r,
                                        ngx_http_chathistory_ratelimit_module);

    if (rlcf->shm_zone == NULL || r != r->main) {
        return NGX_DECLINED;
    }

    zone = rlcf->shm_zone->data;

    if (ngx_http_complex_value(r, &zone->key, &key) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (key.len == 0) {
        return NGX_DECLINED;
    }

    if (key.len > CH_RL_KEY_MAX) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "chathistory rate limit: the key is longer than %d "
                      "bytes, not counted", CH_RL_KEY_MAX);
        return NGX_DECLINED;
    }

    now = ngx_http_chathistory_rl_now();
    window = now / (int64_t) zone->window;
    reset = (ngx_msec_t) ((window + 1) * (int64_t) zone->window - now);

    rc = ngx_http_chathistory_rl_count(r, zone, &key, window, &count);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_SERVICE_UNAVAILABLE;
    }

    if (ngx_http_chathistory_rl_headers(r, zone, count, reset, rc == NGX_BUSY)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_AGAIN) {
        ngx_http_chathistory_rl_sync(zone, 1);
        return NGX_DECLINED;
    }

    if (rc == NGX_OK) {
        return NGX_DECLINED;
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "chathistory rate limit: \"%V\" is over %ui per %M ms "
                  "in zone \"%V\"", &key, zone->limit, zone->window,
                  &zone->shm_zone->shm.name);

    return ngx_http_chathistory_rl_refuse(r);
}


/*
 * NGX_OK and the count with this request (NGX_AGAIN: admitted, and the
 * zone should sync now), NGX_BUSY when over the limit, NGX_ERROR when
 * the zone has no room even for one node.
 */
static ngx_int_t
ngx_http_chathistory_rl_count(ngx_http_request_t *r,
    ngx_http_chathistory_rl_zone_t *zone, ngx_str_t *key, int64_t window,
    ngx_uint_t *count)
{
    uint32_t                         hash;
    ngx_int_t                        rc;
    ngx_http_chathistory_rl_node_t  *node;

    hash = ngx_crc32_short(key->data, key->len);

    ngx_shmtx_lock(&zone->shpool->mutex);

    node = ngx_http_chathistory_rl_find(zone->sh, key->data, key->len, hash);

    if (node == NULL) {
        node = ngx_http_chathistory_rl_alloc(zone, key->len, window);

        if (node == NULL) {
            ngx_shmtx_unlock(&zone->shpool->mutex);
            ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                          "chathistory rate limit: could not allocate a "
                          "node%s", zone->shpool->log_ctx);
            return NGX_ERROR;
        }

        node->node.key = hash;
        node->len = (u_short) key->len;
        ngx_memcpy(node->data, key->data, key->len);
        ngx_rbtree_insert(&zone->sh->rbtree, &node->node);

    } else {
        ngx_queue_remove(&node->queue);
    }

    ngx_queue_insert_head(&zone->sh->queue, &node->queue);

    if (node->window != window) {
        /* a new window: what was sent for the old one no longer counts */
        node->window = window;
        node->synced = 0;
        node->pending = 0;
        node->inflight = 0;
    }

    *count = node->synced + node->inflight + node->pending;

    if (*count < zone->limit) {
        node->pending++;
        (*count)++;

        /*
         * a quarter of what was left at the last sync is gone: sync now,
         * not at the timer, so that hosts under a flood learn each
         * other's counts within a round trip
         */
        rc = (node->pending * 4 >= zone->limit - node->synced)
             ? NGX_AGAIN : NGX_OK;

    } else {
        rc = NGX_BUSY;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    return rc;
}


/* RateLimit-Limit, -Remaining and -Reset (seconds); Retry-After on a 429 */
static ngx_int_t
ngx_http_chathistory_rl_headers(ngx_http_request_t *r,
    ngx_http_chathistory_rl_zone_t *zone, ngx_uint_t count, ngx_msec_t reset,
    ngx_uint_t refused)
{
    ngx_uint_t  remaining;

    remaining = (count < zone->limit) ? zone->limit - count : 0;

    if (ngx_http_chathistory_rl_header(r, "RateLimit-Limit", zone->limit)
        != NGX_OK
        || ngx_http_chathistory_rl_header(r, "RateLimit-Remaining", remaining)
           != NGX_OK
        || ngx_http_chathistory_rl_header(r, "RateLimit-Reset",
                                          (reset + 999) / 1000)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (!refused) {
        return NGX_OK;
    }

    return ngx_http_chathistory_rl_header(r, "Retry-After",
                                          (reset + 999) / 1000);
}


static ngx_int_t
ngx_http_chathistory_rl_header(ngx_http_request_t *r, char *name,
    ngx_uint_t value)
{
    u_char           *p;
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    p = ngx_pnalloc(r->pool, NGX_INT_T_LEN);
    if (p == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) name;
    h->key.len = ngx_strlen(name);
    h->value.data = p;
    h->value.len = ngx_sprintf(p, "%ui", value) - p;

    return NGX_OK;
}


/* the API's JSON error; a body left unread would break keep-alive */
static ngx_int_t
ngx_http_chathistory_rl_refuse(ngx_http_request_t *r)
{
    ngx_int_t  rc;

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_http_chathistory_send_error(r, NGX_HTTP_TOO_MANY_REQUESTS,
                                         "too many requests");

    ngx_http_finalize_request(r, rc);

    return NGX_DONE;
}


/* wall-clock milliseconds: windows must agree between hosts (NTP) */
static int64_t
ngx_http_chathistory_rl_now(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (int64_t) tp->sec * 1000 + tp->msec;
}


static void
ngx_http_chathistory_rl_timer(ngx_event_t *ev)
{
    ngx_http_chathistory_rl_zone_t  *zone;

    zone = ev->data;

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    ngx_http_chathistory_rl_sync(zone, 0);

    ngx_add_timer(ev, zone->sync);
}


/*
 * The zone's turn, taken by one worker of the host at a time, when the
 * interval has passed (or "now", for a key near its limit): send what was
 * admitted since the last sync, with the keys of the window, in one
 * statement that answers with the totals of all hosts.
 */
static void
ngx_http_chathistory_rl_sync(ngx_http_chathistory_rl_zone_t *zone,
    ngx_uint_t hurry)
{
    int64_t                           window;
    ngx_msec_t                        now;
    ngx_pool_t                       *pool;
    ngx_http_chathistory_rl_sync_t   *s;
    ngx_http_chathistory_pg_query_t  *q;

    now = ngx_current_msec;

    ngx_shmtx_lock(&zone->shpool->mutex);

    if ((!hurry && (ngx_msec_int_t) (now - zone->sh->next_sync) < 0)
        || (ngx_msec_int_t) (now - zone->sh->busy_until) < 0)
    {
        ngx_shmtx_unlock(&zone->shpool->mutex);
        return;
    }

    zone->sh->next_sync = now + zone->sync;
    zone->sh->busy_until = now + CH_RL_SYNC_LEASE;

    ngx_shmtx_unlock(&zone->shpool->mutex);

    pool = ngx_create_pool(4096, ngx_cycle->log);
    if (pool == NULL) {
        goto failed;
    }

    s = ngx_pcalloc(pool, sizeof(ngx_http_chathistory_rl_sync_t));
    if (s == NULL) {
        goto failed;
    }

    s->pool = pool;
    s->zone = zone;

    window = ngx_http_chathistory_rl_now() / (int64_t) zone->window;

    if (ngx_http_chathistory_rl_collect(s, window) != NGX_OK) {
        goto failed;
    }

    q = ngx_http_chathistory_pg_query_alloc(pool, ngx_cycle->log,
                                      NGX_HTTP_CHATHISTORY_SQL_RATE_LIMIT_SYNC,
                                      ngx_http_chathistory_rl_synced, s);
    if (q == NULL) {
        ngx_http_chathistory_rl_settle(s, NULL);
        goto failed;
    }

    q->values[0] = (char *) zone->shm_zone->shm.name.data;
    q->values[1] = (char *) s->window_text;
    q->values[2] = (char *) ngx_http_chathistory_rl_array(pool, s, 1);
    q->values[3] = (char *) ngx_http_chathistory_rl_array(pool, s, 0);
    q->values[4] = (char *) s->window_ms;
    q->nparams = 5;

    if (q->values[2] == NULL || q->values[3] == NULL) {
        ngx_http_chathistory_rl_settle(s, NULL);
        goto failed;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "chathistory rate limit: syncing %ui keys of \"%V\"",
                   s->n, &zone->shm_zone->shm.name);

    ngx_http_chathistory_pg_query_run(q);

    return;

failed:

    if (pool != NULL) {
        ngx_destroy_pool(pool);
    }

    ngx_shmtx_lock(&zone->shpool->mutex);
    zone->sh->busy_until = now;
    ngx_shmtx_unlock(&zone->shpool->mutex);
}


/* Move "pending" to "inflight" for the window's most recent keys. */
static ngx_int_t
ngx_http_chathistory_rl_collect(ngx_http_chathistory_rl_sync_t *s,
    int64_t window)
{
    ngx_uint_t                        n;
    ngx_queue_t                      *q;
    ngx_http_chathistory_rl_zone_t   *zone;
    ngx_http_chathistory_rl_node_t   *node;

    zone = s->zone;

    s->window = window;
    ngx_sprintf(s->window_text, "%L%Z", window);
    ngx_sprintf(s->window_ms, "%M%Z", zone->window);

    s->keys = ngx_palloc(s->pool, CH_RL_SYNC_MAX * sizeof(ngx_str_t));
    s->deltas = ngx_palloc(s->pool, CH_RL_SYNC_MAX * sizeof(ngx_uint_t));

    if (s->keys == NULL || s->deltas == NULL) {
        return NGX_ERROR;
    }

    n = 0;

    ngx_shmtx_lock(&zone->shpool->mutex);

    for (q = ngx_queue_head(&zone->sh->queue);
         q != ngx_queue_sentinel(&zone->sh->queue) && n < CH_RL_SYNC_MAX;
         q = ngx_queue_next(q))
    {
        node = ngx_queue_data(q, ngx_http_chathistory_rl_node_t, queue);

        if (node->window != window) {
            /* most recently used first: the rest are older still */
            break;
        }

        s->keys[n].len = node->len;
        s->keys[n].data = ngx_pnalloc(s->pool, node->len);

        if (s->keys[n].data == NULL) {
            break;
        }

        ngx_memcpy(s->keys[n].data, node->data, node->len);

        s->deltas[n] = node->pending;
        node->inflight += node->pending;
        node->pending = 0;
        n++;
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);

    s->n = n;

    return NGX_OK;
}


/* a PostgreSQL array literal of the keys (quoted) or of the deltas */
static u_char *
ngx_http_chathistory_rl_array(ngx_pool_t *pool,
    ngx_http_chathistory_rl_sync_t *s, ngx_uint_t keys)
{
    u_char      *p, *start, *c, *last;
    size_t       len;
    ngx_uint_t   i;

    len = 3;

    for (i = 0; i < s->n; i++) {
        len += keys ? 2 * s->keys[i].len + 3 : NGX_INT_T_LEN + 1;
    }

    start = ngx_pnalloc(pool, len);
    if (start == NULL) {
        return NULL;
    }

    p = start;
    *p++ = '{';

    for (i = 0; i < s->n; i++) {
        if (i > 0) {
            *p++ = ',';
        }

        if (!keys) {
            p = ngx_sprintf(p, "%ui", s->deltas[i]);
            continue;
        }

        *p++ = '"';

        for (c = s->keys[i].data, last = c + s->keys[i].len; c < last; c++) {
            if (*c == '"' || *c == '\\') {
                *p++ = '\\';
            }

            *p++ = *c;
        }

        *p++ = '"';
    }

    *p++ = '}';
    *p = '\0';

    return start;
}


static void
ngx_http_chathistory_rl_synced(ngx_http_chathistory_pg_query_t *q,
    PGresult *res)
{
    ngx_http_chathistory_rl_sync_t  *s;
    ngx_http_chathistory_rl_zone_t  *zone;

    s = q->data;
    zone = s->zone;

    if (res != NULL && PQresultStatus(res) != PGRES_TUPLES_OK) {
        ngx_log_error(NGX_LOG_ERR, q->log, 0,
                      "chathistory rate limit: sync of zone \"%V\" failed: %s",
                      &zone->shm_zone->shm.name, PQresultErrorMessage(res));
        res = NULL;

    } else if (res == NULL && !zone->failing) {
        ngx_log_error(NGX_LOG_WARN, q->log, 0,
                      "chathistory rate limit: zone \"%V\" not synced, the "
                      "database did not answer in time; counting on this "
                      "host alone meanwhile", &zone->shm_zone->shm.name);

    } else if (res != NULL && zone->failing) {
        ngx_log_error(NGX_LOG_NOTICE, q->log, 0,
                      "chathistory rate limit: zone \"%V\" synced again",
                      &zone->shm_zone->shm.name);
    }

    zone->failing = (res == NULL);

    ngx_http_chathistory_rl_settle(s, res);

    ngx_shmtx_lock(&zone->shpool->mutex);
    zone->sh->busy_until = ngx_current_msec;
    ngx_shmtx_unlock(&zone->shpool->mutex);

    ngx_destroy_pool(s->pool);
}


/*
 * The sent counts leave "inflight": into "synced" with the totals of the
 * answer, back to "pending" (sent again next time) without one.
 */
static void
ngx_http_chathistory_rl_settle(ngx_http_chathistory_rl_sync_t *s,
    PGresult *res)
{
    int                              i, rows;
    ngx_int_t                        total;
    ngx_uint_t                       k;
    ngx_http_chathistory_rl_zone_t  *zone;
    ngx_http_chathistory_rl_node_t  *node;

    zone = s->zone;
    rows = (res != NULL) ? PQntuples(res) : 0;

    ngx_shmtx_lock(&zone->shpool->mutex);

    for (k = 0; k < s->n; k++) {
        node = ngx_http_chathistory_rl_find(zone->sh, s->keys[k].data,
                                 s->keys[k].len,
                                 ngx_crc32_short(s->keys[k].data,
                                                 s->keys[k].len));

        if (node == NULL || node->window != s->window) {
            continue;
        }

        node->inflight = (node->inflight > s->deltas[k])
                         ? node->inflight - s->deltas[k] : 0;

        if (res == NULL) {
            node->pending += s->deltas[k];
        }
    }

    for (i = 0; i < rows; i++) {
        total = ngx_atoi((u_char *) PQgetvalue(res, i, 1),
                         PQgetlength(res, i, 1));

        node = ngx_http_chathistory_rl_find(zone->sh,
                                 (u_char *) PQgetvalue(res, i, 0),
                                 PQgetlength(res, i, 0),
                                 ngx_crc32_short(
                                     (u_char *) PQgetvalue(res, i, 0),
                                     PQgetlength(res, i, 0)));

        if (total == NGX_ERROR) {
            continue;
        }

        if (node == NULL) {
            /* a key of other hosts: known here before its first request */
            node = ngx_http_chathistory_rl_known(zone,
                                             (u_char *) PQgetvalue(res, i, 0),
                                             PQgetlength(res, i, 0),
                                             s->window);
            if (node == NULL) {
                continue;
            }
        }

        if (node->window != s->window) {
            continue;
        }

        if ((ngx_uint_t) total > node->synced) {
            node->synced = total;
        }
    }

    ngx_shmtx_unlock(&zone->shpool->mutex);
}


/* A node for a key only other hosts have seen, at the cold end. */
static ngx_http_chathistory_rl_node_t *
ngx_http_chathistory_rl_known(ngx_http_chathistory_rl_zone_t *zone,
    u_char *data, size_t len, int64_t window)
{
    ngx_http_chathistory_rl_node_t  *node;

    if (len == 0 || len > CH_RL_KEY_MAX) {
        return NULL;
    }

    node = ngx_http_chathistory_rl_alloc(zone, len, window);
    if (node == NULL) {
        return NULL;
    }

    node->node.key = ngx_crc32_short(data, len);
    node->len = (u_short) len;
    ngx_memcpy(node->data, data, len);
    ngx_rbtree_insert(&zone->sh->rbtree, &node->node);
    ngx_queue_insert_tail(&zone->sh->queue, &node->queue);

    node->window = window;
    node->synced = 0;
    node->pending = 0;
    node->inflight = 0;

    return node;
}


static ngx_http_chathistory_rl_node_t *
ngx_http_chathistory_rl_find(ngx_http_chathistory_rl_shctx_t *sh, u_char *data,
    size_t len, uint32_t hash)
{
    ngx_int_t                        rc;
    ngx_rbtree_node_t               *node, *sentinel;
    ngx_http_chathistory_rl_node_t  *rn;

    node = sh->rbtree.root;
    sentinel = sh->rbtree.sentinel;

    while (node != sentinel) {

        if (hash != node->key) {
            node = (hash < node->key) ? node->left : node->right;
            continue;
        }

        rn = (ngx_http_chathistory_rl_node_t *) node;

        rc = ngx_memn2cmp(data, rn->data, len, (size_t) rn->len);

        if (rc == 0) {
            return rn;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


/* Make room: keys of past windows go first, the least recently used next. */
static ngx_http_chathistory_rl_node_t *
ngx_http_chathistory_rl_alloc(ngx_http_chathistory_rl_zone_t *zone, size_t len,
    int64_t window)
{
    size_t                           size;
    ngx_http_chathistory_rl_node_t  *node;

    size = offsetof(ngx_http_chathistory_rl_node_t, data) + len;

    ngx_http_chathistory_rl_expire(zone, window, 0);

    node = ngx_slab_alloc_locked(zone->shpool, size);
    if (node != NULL) {
        node->window = -1;
        return node;
    }

    ngx_http_chathistory_rl_expire(zone, window, 1);

    node = ngx_slab_alloc_locked(zone->shpool, size);
    if (node != NULL) {
        node->window = -1;
    }

    return node;
}


/* A few nodes from the cold end at a time: no request pays for many. */
static void
ngx_http_chathistory_rl_expire(ngx_http_chathistory_rl_zone_t *zone,
    int64_t window, ngx_uint_t force)
{
    ngx_uint_t                       n;
    ngx_queue_t                     *q;
    ngx_http_chathistory_rl_node_t  *node;

    for (n = 0; n < 3 && !ngx_queue_empty(&zone->sh->queue); n++) {

        q = ngx_queue_last(&zone->sh->queue);
        node = ngx_queue_data(q, ngx_http_chathistory_rl_node_t, queue);

        if (!(force && n == 0) && node->window >= window) {
            return;
        }

        ngx_queue_remove(q);
        ngx_rbtree_delete(&zone->sh->rbtree, &node->node);
        ngx_slab_free_locked(zone->shpool, node);
    }
}


static void
ngx_http_chathistory_rl_rbtree_insert_value(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t               **p;
    ngx_http_chathistory_rl_node_t   *rn, *rt;

    for ( ;; ) {

        if (node->key != temp->key) {
            p = (node->key < temp->key) ? &temp->left : &temp->right;

        } else {
            rn = (ngx_http_chathistory_rl_node_t *) node;
            rt = (ngx_http_chathistory_rl_node_t *) temp;

            p = (ngx_memn2cmp(rn->data, rt->data, rn->len, rt->len) < 0)
                ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


static ngx_int_t
ngx_http_chathistory_rl_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_chathistory_rl_zone_t  *ozone = data;

    size_t                           len;
    ngx_http_chathistory_rl_zone_t  *zone;

    zone = shm_zone->data;

    if (ozone != NULL) {
        /* a reload keeps the counts of the window */
        zone->sh = ozone->sh;
        zone->shpool = ozone->shpool;
        return NGX_OK;
    }

    zone->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        zone->sh = zone->shpool->data;
        return NGX_OK;
    }

    zone->sh = ngx_slab_calloc(zone->shpool,
                               sizeof(ngx_http_chathistory_rl_shctx_t));
    if (zone->sh == NULL) {
        return NGX_ERROR;
    }

    zone->shpool->data = zone->sh;

    ngx_rbtree_init(&zone->sh->rbtree, &zone->sh->sentinel,
                    ngx_http_chathistory_rl_rbtree_insert_value);
    ngx_queue_init(&zone->sh->queue);

    len = sizeof(" in chathistory_rate_limit_zone \"\"")
          + shm_zone->shm.name.len;

    zone->shpool->log_ctx = ngx_slab_alloc(zone->shpool, len);
    if (zone->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(zone->shpool->log_ctx, " in chathistory_rate_limit_zone "
                "\"%V\"%Z", &shm_zone->shm.name);

    return NGX_OK;
}


static void *
ngx_http_chathistory_rl_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_chathistory_rl_main_conf_t  *rmcf;

    rmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_chathistory_rl_main_conf_t));
    if (rmcf == NULL) {
        return NULL;
    }

    if (ngx_array_init(&rmcf->zones, cf->pool, 2,
                       sizeof(ngx_http_chathistory_rl_zone_t *))
        != NGX_OK)
    {
        return NULL;
    }

    return rmcf;
}


static void *
ngx_http_chathistory_rl_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_chathistory_rl_loc_conf_t  *rlcf;

    rlcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_chathistory_rl_loc_conf_t));
    if (rlcf == NULL) {
        return NULL;
    }

    rlcf->shm_zone = NGX_CONF_UNSET_PTR;

    return rlcf;
}


static char *
ngx_http_chathistory_rl_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_http_chathistory_rl_loc_conf_t  *prev = parent;
    ngx_http_chathistory_rl_loc_conf_t  *conf = child;

    ngx_conf_merge_ptr_value(conf->shm_zone, prev->shm_zone, NULL);

    if (conf->shm_zone != NULL && conf->shm_zone->data == NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "unknown chathistory_rate_limit_zone \"%V\"",
                           &conf->shm_zone->shm.name);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/*
 * Registered before the key gate's handler, so it runs after it (a phase
 * runs its handlers in the reverse order) and the key's organization is
 * known; and before limit_req, whose handler was registered first.
 */
static ngx_int_t
ngx_http_chathistory_rl_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt                  *h;
    ngx_http_core_main_conf_t            *core;
    ngx_http_chathistory_rl_main_conf_t  *rmcf;

    rmcf = ngx_http_conf_get_module_main_conf(cf,
                                        ngx_http_chathistory_ratelimit_module);

    if (rmcf->zones.nelts == 0) {
        return NGX_OK;
    }

    core = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&core->phases[NGX_HTTP_PREACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_chathistory_rl_handler;

    return NGX_OK;
}


/* each worker arms a timer per zone; the zone's turn picks one of them */
static ngx_int_t
ngx_http_chathistory_rl_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t                            i;
    ngx_http_chathistory_rl_zone_t      **zones;
    ngx_http_chathistory_rl_main_conf_t  *rmcf;

    rmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                        ngx_http_chathistory_ratelimit_module);

    if (rmcf == NULL
        || (ngx_process != NGX_PROCESS_WORKER
            && ngx_process != NGX_PROCESS_SINGLE))
    {
        return NGX_OK;
    }

    zones = rmcf->zones.elts;

    for (i = 0; i < rmcf->zones.nelts; i++) {
        zones[i]->timer.handler = ngx_http_chathistory_rl_timer;
        zones[i]->timer.data = zones[i];
        zones[i]->timer.log = cycle->log;
        zones[i]->timer.cancelable = 1;

        ngx_add_timer(&zones[i]->timer, zones[i]->sync);
    }

    return NGX_OK;
}


/* chathistory_rate_limit_zone KEY zone=NAME:SIZE rate=Nr/s|m|h [sync=TIME] */
static char *
ngx_http_chathistory_rl_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_chathistory_rl_main_conf_t  *rmcf = conf;

    u_char                             *p;
    ssize_t                             size;
    ngx_int_t                           sync;
    ngx_str_t                          *value, name, s;
    ngx_uint_t                          i, limit;
    ngx_msec_t                          window;
    ngx_shm_zone_t                     *shm_zone;
    ngx_http_chathistory_rl_zone_t     *zone, **zp;
    ngx_http_chathistory_main_conf_t   *cmcf;
    ngx_http_compile_complex_value_t    ccv;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_chathistory_module);

    if (cmcf->database_url.len == 0) {
        return "requires \"chathistory_database_url\" before it";
    }

    value = cf->args->elts;

    zone = ngx_pcalloc(cf->pool, sizeof(ngx_http_chathistory_rl_zone_t));
    if (zone == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = &value[1];
    ccv.complex_value = &zone->key;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    size = 0;
    limit = 0;
    window = 0;
    sync = 250;
    ngx_str_null(&name);

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "zone=", 5) == 0) {
            name.data = value[i].data + 5;
            p = (u_char *) ngx_strchr(name.data, ':');

            if (p == NULL || p == name.data) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid zone \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            name.len = p - name.data;
            s.data = p + 1;
            s.len = value[i].data + value[i].len - s.data;

            size = ngx_parse_size(&s);

            if (size == NGX_ERROR || size < (ssize_t) (8 * ngx_pagesize)) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid zone size \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "rate=", 5) == 0) {
            s.data = value[i].data + 5;
            s.len = value[i].len - 5;

            if (ngx_http_chathistory_rl_parse_rate(&s, &limit, &window)
                != NGX_OK)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid rate \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "sync=", 5) == 0) {
            s.data = value[i].data + 5;
            s.len = value[i].len - 5;

            sync = ngx_parse_time(&s, 0);

            if (sync == NGX_ERROR || sync < 10 || sync > 60000) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid sync \"%V\": 10ms to 60s",
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[i]);
        return NGX_CONF_ERROR;
    }

    if (name.len == 0 || limit == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" must have \"zone\" and \"rate\" parameters",
                           &cmd->name);
        return NGX_CONF_ERROR;
    }

    zone->limit = limit;
    zone->window = window;
    zone->sync = (ngx_msec_t) sync;

    shm_zone = ngx_shared_memory_add(cf, &name, size,
                                     &ngx_http_chathistory_ratelimit_module);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (shm_zone->data != NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "duplicate zone \"%V\"", &name);
        return NGX_CONF_ERROR;
    }

    /* the zone's name is the statement's parameter: NUL-terminated */
    p = ngx_pnalloc(cf->pool, name.len + 1);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memcpy(p, name.data, name.len);
    p[name.len] = '\0';
    shm_zone->shm.name.data = p;

    shm_zone->init = ngx_http_chathistory_rl_init_zone;
    shm_zone->data = zone;
    zone->shm_zone = shm_zone;

    zp = ngx_array_push(&rmcf->zones);
    if (zp == NULL) {
        return NGX_CONF_ERROR;
    }

    *zp = zone;

    return NGX_CONF_OK;
}


/* "600r/m": the limit per window of a second, a minute or an hour */
static ngx_int_t
ngx_http_chathistory_rl_parse_rate(ngx_str_t *s, ngx_uint_t *limit,
    ngx_msec_t *window)
{
    ngx_int_t  n;

    if (s->len < 4 || ngx_strncmp(s->data + s->len - 3, "r/", 2) != 0) {
        return NGX_ERROR;
    }

    switch (s->data[s->len - 1]) {
    case 's':
        *window = 1000;
        break;
    case 'm':
        *window = 60000;
        break;
    case 'h':
        *window = 3600000;
        break;
    default:
        return NGX_ERROR;
    }

    n = ngx_atoi(s->data, s->len - 3);

    if (n == NGX_ERROR || n == 0) {
        return NGX_ERROR;
    }

    *limit = (ngx_uint_t) n;

    return NGX_OK;
}


/* chathistory_rate_limit zone=NAME | off */
static char *
ngx_http_chathistory_rl_limit(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_chathistory_rl_loc_conf_t  *rlcf = conf;

    ngx_str_t  *value, name;

    if (rlcf->shm_zone != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        rlcf->shm_zone = NULL;
        return NGX_CONF_OK;
    }

    if (ngx_strncmp(value[1].data, "zone=", 5) != 0 || value[1].len == 5) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid parameter \"%V\"", &value[1]);
        return NGX_CONF_ERROR;
    }

    name.data = value[1].data + 5;
    name.len = value[1].len - 5;

    /* size 0: the zone's own directive, perhaps further down, sizes it */
    rlcf->shm_zone = ngx_shared_memory_add(cf, &name, 0,
                                        &ngx_http_chathistory_ratelimit_module);
    if (rlcf->shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}
