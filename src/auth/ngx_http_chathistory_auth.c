
/*
 * ngx_http_chathistory_auth_module: API keys. With "chathistory_auth
 * api_key" a request passes only with the key of an organization, found
 * by its SHA-256 in a cache the workers share, else in PostgreSQL without
 * blocking. The organization becomes $chathistory_org_id and the scope of
 * the API. The check runs first in the preaccess phase, so that limit_req
 * can count requests per organization.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_chathistory_module.h"
#include "ngx_http_chathistory_auth.h"
#include "ngx_http_chathistory_cors.h"
#include "ngx_http_chathistory_json.h"
#include "ngx_http_chathistory_pg.h"
#include "ngx_http_chathistory_statements.h"
#include "ngx_http_chathistory_uuid.h"
#include "chathistory_sha256.h"


#define CH_AUTH_KEY_MAX      256
#define CH_AUTH_TOUCH_EVERY  60000


typedef enum {
    CH_AUTH_OFF = 0,
    CH_AUTH_API_KEY
} ngx_http_chathistory_auth_mode_e;


typedef enum {
    CH_AUTH_MISS = 0,
    CH_AUTH_VALID,
    CH_AUTH_INVALID
} ngx_http_chathistory_auth_cached_e;


typedef struct {
    ngx_rbtree_node_t                   node;   /* key: the hash's start */
    ngx_queue_t                         queue;  /* most recently used first */
    ngx_msec_t                          expires;
    ngx_msec_t                          touched;
    u_char                              hash[CHATHISTORY_SHA256_LEN];
    u_char                              org[NGX_HTTP_CHATHISTORY_UUID_LEN];
    u_char                              valid;
} ngx_http_chathistory_auth_node_t;


typedef struct {
    ngx_rbtree_t                        rbtree;
    ngx_rbtree_node_t                   sentinel;
    ngx_queue_t                         queue;
} ngx_http_chathistory_auth_shctx_t;


typedef struct {
    ngx_http_chathistory_auth_shctx_t  *sh;
    ngx_slab_pool_t                    *shpool;
    ngx_msec_t                          valid;
    ngx_msec_t                          invalid;
} ngx_http_chathistory_auth_cache_t;


typedef struct {
    ngx_shm_zone_t                     *shm_zone;
    ngx_flag_t                          used;
} ngx_http_chathistory_auth_main_conf_t;


typedef struct {
    ngx_uint_t                          mode;
} ngx_http_chathistory_auth_loc_conf_t;


typedef struct {
    u_char                              hash[CHATHISTORY_SHA256_LEN];
    u_char                              hex[2 * CHATHISTORY_SHA256_LEN + 1];
    ngx_http_chathistory_uuid_t         org;

    /* NGX_HTTP_OK once the key is good, the refusal's status otherwise */
    ngx_uint_t                          status;
    const char                         *error;

    unsigned                            waiting:1;
    unsigned                            invalid_token:1;
    unsigned                            touch:1;
} ngx_http_chathistory_auth_ctx_t;


static ngx_int_t ngx_http_chathistory_auth_handler(ngx_http_request_t *r);
static ngx_http_chathistory_auth_ctx_t *ngx_http_chathistory_auth_get_ctx(
    ngx_http_request_t *r);
static void ngx_http_chathistory_auth_cleanup(void *data);
static ngx_int_t ngx_http_chathistory_auth_x_api_key(ngx_http_request_t *r,
    ngx_str_t *key);
static ngx_int_t ngx_http_chathistory_auth_lookup(ngx_http_request_t *r,
    ngx_http_chathistory_auth_ctx_t *ctx);
static void ngx_http_chathistory_auth_looked_up(
    ngx_http_chathistory_pg_query_t *q, PGresult *res);
static ngx_int_t ngx_http_chathistory_auth_refuse(ngx_http_request_t *r,
    ngx_http_chathistory_auth_ctx_t *ctx);
static void ngx_http_chathistory_auth_touch(
    ngx_http_chathistory_auth_ctx_t *ctx);
static void ngx_http_chathistory_auth_touched(
    ngx_http_chathistory_pg_query_t *q, PGresult *res);
static ngx_http_chathistory_auth_cached_e ngx_http_chathistory_auth_cache_get(
    ngx_http_request_t *r, ngx_http_chathistory_auth_ctx_t *ctx);
static void ngx_http_chathistory_auth_cache_put(ngx_http_request_t *r,
    ngx_http_chathistory_auth_ctx_t *ctx, ngx_uint_t valid);
static ngx_http_chathistory_auth_node_t *ngx_http_chathistory_auth_cache_find(
    ngx_http_chathistory_auth_shctx_t *sh, u_char *hash);
static ngx_http_chathistory_auth_node_t *
    ngx_http_chathistory_auth_cache_alloc(
    ngx_http_chathistory_auth_cache_t *cache);
static void ngx_http_chathistory_auth_cache_expire(
    ngx_http_chathistory_auth_cache_t *cache, ngx_uint_t force);
static ngx_rbtree_key_t ngx_http_chathistory_auth_rbtree_key(u_char *hash);
static void ngx_http_chathistory_auth_rbtree_insert_value(
    ngx_rbtree_node_t *temp, ngx_rbtree_node_t *node,
    ngx_rbtree_node_t *sentinel);
static ngx_int_t ngx_http_chathistory_auth_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static ngx_int_t ngx_http_chathistory_auth_org_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data);
static ngx_int_t ngx_http_chathistory_auth_add_variables(ngx_conf_t *cf);
static void *ngx_http_chathistory_auth_create_main_conf(ngx_conf_t *cf);
static void *ngx_http_chathistory_auth_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_chathistory_auth_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);
static ngx_int_t ngx_http_chathistory_auth_init(ngx_conf_t *cf);
static char *ngx_http_chathistory_auth_cache_zone(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);


static ngx_conf_enum_t  ngx_http_chathistory_auth_modes[] = {
    { ngx_string("off"), CH_AUTH_OFF },
    { ngx_string("api_key"), CH_AUTH_API_KEY },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_http_chathistory_auth_commands[] = {

    { ngx_string("chathistory_auth"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_enum_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_chathistory_auth_loc_conf_t, mode),
      &ngx_http_chathistory_auth_modes },

    { ngx_string("chathistory_auth_cache"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_chathistory_auth_cache_zone,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_chathistory_auth_module_ctx = {
    ngx_http_chathistory_auth_add_variables, /* preconfiguration */
    ngx_http_chathistory_auth_init,        /* postconfiguration */

    ngx_http_chathistory_auth_create_main_conf, /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_chathistory_auth_create_loc_conf, /* create location conf */
    ngx_http_chathistory_auth_merge_loc_conf   /* merge location conf */
};


ngx_module_t  ngx_http_chathistory_auth_module = {
    NGX_MODULE_V1,
    &ngx_http_chathistory_auth_module_ctx, /* module context */
    ngx_http_chathistory_auth_commands,    /* module directives */
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


static ngx_http_variable_t  ngx_http_chathistory_auth_vars[] = {

    { ngx_string("chathistory_org_id"), NULL,
      ngx_http_chathistory_auth_org_variable, 0,
      NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_str_t  ngx_http_chathistory_auth_challenge =
    ngx_string("Bearer realm=\"chathistory\"");

static ngx_str_t  ngx_http_chathistory_auth_invalid_challenge =
    ngx_string("Bearer realm=\"chathistory\", error=\"invalid_token\"");


/*
 * Let the request go on (NGX_DECLINED, to the next preaccess handler such
 * as limit_req), wait for the database (NGX_DONE, the phases run again
 * when it answers), or answer it here with a JSON error.
 */
static ngx_int_t
ngx_http_chathistory_auth_handler(ngx_http_request_t *r)
{
    ngx_str_t                              key;
    ngx_uint_t                             invalid;
    ngx_pool_cleanup_t                    *cln;
    ngx_http_chathistory_auth_ctx_t       *ctx;
    ngx_http_chathistory_auth_loc_conf_t  *alcf;

    alcf = ngx_http_get_module_loc_conf(r, ngx_http_chathistory_auth_module);

    if (alcf->mode == CH_AUTH_OFF || r != r->main) {
        return NGX_DECLINED;
    }

    /* a browser's preflight carries no key; it is answered without data */
    if (ngx_http_chathistory_cors_preflight(r)) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_chathistory_auth_get_ctx(r);

    if (ctx != NULL) {
        if (ctx->waiting) {
            return NGX_DONE;
        }

        if (ctx->status == NGX_HTTP_OK) {
            return NGX_DECLINED;
        }

        return ngx_http_chathistory_auth_refuse(r, ctx);
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_chathistory_auth_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_http_chathistory_auth_cleanup;
    cln->data = ctx;

    ngx_http_set_ctx(r, ctx, ngx_http_chathistory_auth_module);

    ctx->status = NGX_HTTP_UNAUTHORIZED;

    if (ngx_http_chathistory_auth_key(r, &key, &ctx->error, &invalid)
        != NGX_OK)
    {
        ctx->invalid_token = invalid ? 1 : 0;
        return ngx_http_chathistory_auth_refuse(r, ctx);
    }

    if (chathistory_sha256(key.data, key.len, ctx->hash) != 0) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "chathistory auth: SHA-256 failed in libcrypto");
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_hex_dump(ctx->hex, ctx->hash, CHATHISTORY_SHA256_LEN);

    /* never the key, nor a hash whole enough to look it up with */
    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "chathistory auth: key %*s...", (size_t) 8, ctx->hex);

    switch (ngx_http_chathistory_auth_cache_get(r, ctx)) {

    case CH_AUTH_VALID:
        ctx->status = NGX_HTTP_OK;

        if (ctx->touch) {
            ngx_http_chathistory_auth_touch(ctx);
        }

        return NGX_DECLINED;

    case CH_AUTH_INVALID:
        ctx->status = NGX_HTTP_UNAUTHORIZED;
        ctx->error = "the API key is not valid";
        ctx->invalid_token = 1;
        return ngx_http_chathistory_auth_refuse(r, ctx);

    default: /* CH_AUTH_MISS */
        return ngx_http_chathistory_auth_lookup(r, ctx);
    }
}


/*
 * The ctx of the main request; an internal redirect (error_page 429 to a
 * named location) clears module ctxs, but the pool cleanup keeps it, as
 * the realip module keeps its own.
 */
static ngx_http_chathistory_auth_ctx_t *
ngx_http_chathistory_auth_get_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t               *cln;
    ngx_http_chathistory_auth_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_chathistory_auth_module);

    if (ctx != NULL || !(r->internal || r->filter_finalize)) {
        return ctx;
    }

    for (cln = r->pool->cleanup; cln; cln = cln->next) {
        if (cln->handler == ngx_http_chathistory_auth_cleanup) {
            ctx = cln->data;
            ngx_http_set_ctx(r, ctx, ngx_http_chathistory_auth_module);
            return ctx;
        }
    }

    return NULL;
}


static void
ngx_http_chathistory_auth_cleanup(void *data)
{
    /* nothing to free: the cleanup marks where the ctx is */
}


/*
 * The key from "Authorization: Bearer <key>" or "X-API-Key: <key>":
 * printable ASCII, at most CH_AUTH_KEY_MAX bytes.  Otherwise NGX_DECLINED,
 * why in *error, and in *invalid_token whether a key was there but bad.
 */
ngx_int_t
ngx_http_chathistory_auth_key(ngx_http_request_t *r, ngx_str_t *key,
    const char **error, ngx_uint_t *invalid_token)
{
    u_char           *p, *last;
    ngx_int_t         rc;
    ngx_table_elt_t  *h;

    *invalid_token = 1;
    *error = "the API key is malformed";

    h = r->headers_in.authorization;

    if (h != NULL && h->value.len > sizeof("Bearer ") - 1
        && ngx_strncasecmp(h->value.data, (u_char *) "Bearer ",
                           sizeof("Bearer ") - 1) == 0)
    {
        p = h->value.data + sizeof("Bearer ") - 1;
        last = h->value.data + h->value.len;

        while (p < last && *p == ' ') {
            p++;
        }

        key->data = p;
        key->len = last - p;

    } else if (h != NULL) {
        /* credentials of another scheme are not ours to ignore: a key
         * beside them would let a request through that some proxy or
         * client meant otherwise */
        *error = "the Authorization header is not a Bearer token";
        return NGX_DECLINED;

    } else {
        rc = ngx_http_chathistory_auth_x_api_key(r, key);

        if (rc == NGX_DECLINED) {
            *error = "an API key is required";
            *invalid_token = 0;
            return NGX_DECLINED;
        }

        if (rc != NGX_OK) {
            return NGX_DECLINED;
        }
    }

    if (key->len == 0 || key->len > CH_AUTH_KEY_MAX) {
        return NGX_DECLINED;
    }

    for (p = key->data, last = p + key->len; p < last; p++) {
        if (*p < 0x21 || *p > 0x7e) {
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


/* One X-API-Key header: NGX_OK; none: NGX_DECLINED; several: NGX_ERROR. */
static ngx_int_t
ngx_http_chathistory_auth_x_api_key(ngx_http_request_t *r, ngx_str_t *key)
{
    ngx_uint_t        i, n;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h;

    n = 0;
    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == sizeof("X-API-Key") - 1
            && ngx_strncasecmp(h[i].key.data, (u_char *) "X-API-Key",
                               sizeof("X-API-Key") - 1) == 0)
        {
            *key = h[i].value;
            n++;
        }
    }

    return (n == 0) ? NGX_DECLINED : (n == 1) ? NGX_OK : NGX_ERROR;
}


static ngx_int_t
ngx_http_chathistory_auth_lookup(ngx_http_request_t *r,
    ngx_http_chathistory_auth_ctx_t *ctx)
{
    ngx_http_chathistory_pg_query_t  *q;

    q = ngx_http_chathistory_pg_query_create(r,
                                        NGX_HTTP_CHATHISTORY_SQL_APIKEY_LOOKUP,
                                        ngx_http_chathistory_auth_looked_up,
                                        ctx);
    if (q == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    q->values[0] = (char *) ctx->hex;
    q->nparams = 1;

    ctx->waiting = 1;

    ngx_http_chathistory_pg_query_run(q);

    return NGX_DONE;
}


static void
ngx_http_chathistory_auth_looked_up(ngx_http_chathistory_pg_query_t *q,
    PGresult *res)
{
    ngx_http_request_t               *r;
    ngx_http_chathistory_auth_ctx_t  *ctx;

    r = q->request;
    ctx = q->data;

    ctx->waiting = 0;

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        if (res != NULL) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "chathistory: API key lookup failed: %s",
                          PQresultErrorMessage(res));
        }

        /* never let a request through unchecked */
        ctx->status = NGX_HTTP_SERVICE_UNAVAILABLE;
        ctx->error = (res == NULL
                      && q->failure != NGX_HTTP_CHATHISTORY_PG_UNREACHABLE)
                     ? "the database is too busy to answer in time"
                     : "the database is unreachable";

    } else if (PQntuples(res) == 0
               || PQgetlength(res, 0, 0) != NGX_HTTP_CHATHISTORY_UUID_LEN)
    {
        ctx->status = NGX_HTTP_UNAUTHORIZED;
        ctx->error = "the API key is not valid";
        ctx->invalid_token = 1;

        ngx_http_chathistory_auth_cache_put(r, ctx, 0);

    } else {
        ngx_memcpy(ctx->org.text, PQgetvalue(res, 0, 0),
                   NGX_HTTP_CHATHISTORY_UUID_LEN);
        ctx->status = NGX_HTTP_OK;

        ngx_http_chathistory_auth_cache_put(r, ctx, 1);

        if (ctx->touch) {
            ngx_http_chathistory_auth_touch(ctx);
        }
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "chathistory auth: looked up, status %ui", ctx->status);

    ngx_http_core_run_phases(r);
}


/*
 * Answer with a JSON error. Returning the status instead would let the
 * phase finalize the request with nginx's own HTML page.
 */
static ngx_int_t
ngx_http_chathistory_auth_refuse(ngx_http_request_t *r,
    ngx_http_chathistory_auth_ctx_t *ctx)
{
    ngx_int_t         rc;
    ngx_table_elt_t  *h;

    /* a body left unread would break the keep-alive connection */
    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ctx->status == NGX_HTTP_UNAUTHORIZED) {
        h = ngx_list_push(&r->headers_out.headers);
        if (h == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        h->hash = 1;
        ngx_str_set(&h->key, "WWW-Authenticate");
        h->value = ctx->invalid_token
                   ? ngx_http_chathistory_auth_invalid_challenge
                   : ngx_http_chathistory_auth_challenge;

        r->headers_out.www_authenticate = h;
    }

    rc = ngx_http_chathistory_send_error(r, ctx->status, ctx->error);

    ngx_http_finalize_request(r, rc);

    return NGX_DONE;
}


/*
 * Note the key's use in a query of its own that nothing waits for; the
 * statement itself writes at most once a minute.
 */
static void
ngx_http_chathistory_auth_touch(ngx_http_chathistory_auth_ctx_t *ctx)
{
    u_char                           *hex;
    ngx_pool_t                       *pool;
    ngx_http_chathistory_pg_query_t  *q;

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "chathistory auth: noting the key's use");

    pool = ngx_create_pool(1024, ngx_cycle->log);
    if (pool == NULL) {
        return;
    }

    hex = ngx_pnalloc(pool, sizeof(ctx->hex));
    q = ngx_http_chathistory_pg_query_alloc(pool, ngx_cycle->log,
                                         NGX_HTTP_CHATHISTORY_SQL_APIKEY_TOUCH,
                                         ngx_http_chathistory_auth_touched,
                                         pool);

    if (hex == NULL || q == NULL) {
        ngx_destroy_pool(pool);
        return;
    }

    ngx_memcpy(hex, ctx->hex, sizeof(ctx->hex));

    q->values[0] = (char *) hex;
    q->nparams = 1;

    ngx_http_chathistory_pg_query_run(q);
}


static void
ngx_http_chathistory_auth_touched(ngx_http_chathistory_pg_query_t *q,
    PGresult *res)
{
    if (res != NULL && PQresultStatus(res) != PGRES_COMMAND_OK) {
        ngx_log_error(NGX_LOG_ERR, q->log, 0,
                      "chathistory: last_used_at of an API key not updated: "
                      "%s", PQresultErrorMessage(res));
    }

    ngx_destroy_pool(q->data);
}


static ngx_http_chathistory_auth_cached_e
ngx_http_chathistory_auth_cache_get(ngx_http_request_t *r,
    ngx_http_chathistory_auth_ctx_t *ctx)
{
    ngx_msec_t                              now;
    ngx_http_chathistory_auth_node_t       *node;
    ngx_http_chathistory_auth_cache_t      *cache;
    ngx_http_chathistory_auth_cached_e      found;
    ngx_http_chathistory_auth_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_chathistory_auth_module);

    if (amcf->shm_zone == NULL) {
        return CH_AUTH_MISS;
    }

    cache = amcf->shm_zone->data;
    now = ngx_current_msec;
    found = CH_AUTH_MISS;

    ngx_shmtx_lock(&cache->shpool->mutex);

    node = ngx_http_chathistory_auth_cache_find(cache->sh, ctx->hash);

    if (node != NULL && (ngx_msec_int_t) (node->expires - now) > 0) {
        ngx_queue_remove(&node->queue);
        ngx_queue_insert_head(&cache->sh->queue, &node->queue);

        if (node->valid) {
            ngx_memcpy(ctx->org.text, node->org,
                       NGX_HTTP_CHATHISTORY_UUID_LEN);

            if (now - node->touched >= CH_AUTH_TOUCH_EVERY) {
                node->touched = now;
                ctx->touch = 1;
            }

            found = CH_AUTH_VALID;

        } else {
            found = CH_AUTH_INVALID;
        }
    }

    ngx_shmtx_unlock(&cache->shpool->mutex);

    return found;
}


/* Remember what the database said; a full zone forgets the oldest. */
static void
ngx_http_chathistory_auth_cache_put(ngx_http_request_t *r,
    ngx_http_chathistory_auth_ctx_t *ctx, ngx_uint_t valid)
{
    ngx_msec_t                              now, ttl;
    ngx_http_chathistory_auth_node_t       *node;
    ngx_http_chathistory_auth_cache_t      *cache;
    ngx_http_chathistory_auth_main_conf_t  *amcf;

    amcf = ngx_http_get_module_main_conf(r, ngx_http_chathistory_auth_module);

    ctx->touch = valid;

    if (amcf->shm_zone == NULL) {
        return;
    }

    cache = amcf->shm_zone->data;
    ttl = valid ? cache->valid : cache->invalid;
    now = ngx_current_msec;

    if (ttl == 0) {
        return;
    }

    ngx_shmtx_lock(&cache->shpool->mutex);

    node = ngx_http_chathistory_auth_cache_find(cache->sh, ctx->hash);

    if (node != NULL) {
        ngx_queue_remove(&node->queue);

        /* a key looked up again keeps the time of its last touch */
        if (valid && node->valid
            && now - node->touched < CH_AUTH_TOUCH_EVERY)
        {
            ctx->touch = 0;
        }

    } else {
        node = ngx_http_chathistory_auth_cache_alloc(cache);

        if (node == NULL) {
            ngx_shmtx_unlock(&cache->shpool->mutex);
            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "chathistory: could not cache an API key%s",
                          cache->shpool->log_ctx);
            return;
        }

        ngx_memcpy(node->hash, ctx->hash, CHATHISTORY_SHA256_LEN);
        node->touched = now;
        node->node.key = ngx_http_chathistory_auth_rbtree_key(ctx->hash);
        ngx_rbtree_insert(&cache->sh->rbtree, &node->node);
    }

    ngx_queue_insert_head(&cache->sh->queue, &node->queue);

    node->valid = valid ? 1 : 0;
    node->expires = now + ttl;

    if (ctx->touch) {
        node->touched = now;
    }

    if (valid) {
        ngx_memcpy(node->org, ctx->org.text, NGX_HTTP_CHATHISTORY_UUID_LEN);
    }

    ngx_shmtx_unlock(&cache->shpool->mutex);
}


static ngx_http_chathistory_auth_node_t *
ngx_http_chathistory_auth_cache_find(ngx_http_chathistory_auth_shctx_t *sh,
    u_char *hash)
{
    ngx_int_t                          rc;
    ngx_rbtree_key_t                   key;
    ngx_rbtree_node_t                 *node, *sentinel;
    ngx_http_chathistory_auth_node_t  *an;

    key = ngx_http_chathistory_auth_rbtree_key(hash);

    node = sh->rbtree.root;
    sentinel = sh->rbtree.sentinel;

    while (node != sentinel) {

        if (key != node->key) {
            node = (key < node->key) ? node->left : node->right;
            continue;
        }

        an = (ngx_http_chathistory_auth_node_t *) node;

        rc = ngx_memcmp(hash, an->hash, CHATHISTORY_SHA256_LEN);

        if (rc == 0) {
            return an;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


/* Make room: expired entries go first, the least recently used if need be. */
static ngx_http_chathistory_auth_node_t *
ngx_http_chathistory_auth_cache_alloc(ngx_http_chathistory_auth_cache_t *cache)
{
    ngx_http_chathistory_auth_node_t  *node;

    ngx_http_chathistory_auth_cache_expire(cache, 0);

    node = ngx_slab_alloc_locked(cache->shpool,
                                 sizeof(ngx_http_chathistory_auth_node_t));
    if (node != NULL) {
        return node;
    }

    ngx_http_chathistory_auth_cache_expire(cache, 1);

    return ngx_slab_alloc_locked(cache->shpool,
                                 sizeof(ngx_http_chathistory_auth_node_t));
}


/* A few entries from the cold end at a time: no request pays for many. */
static void
ngx_http_chathistory_auth_cache_expire(ngx_http_chathistory_auth_cache_t *cache,
    ngx_uint_t force)
{
    ngx_uint_t                         n;
    ngx_msec_t                         now;
    ngx_queue_t                       *q;
    ngx_http_chathistory_auth_node_t  *node;

    now = ngx_current_msec;

    for (n = 0; n < 3 && !ngx_queue_empty(&cache->sh->queue); n++) {

        q = ngx_queue_last(&cache->sh->queue);
        node = ngx_queue_data(q, ngx_http_chathistory_auth_node_t, queue);

        if (!(force && n == 0) && (ngx_msec_int_t) (node->expires - now) > 0) {
            return;
        }

        ngx_queue_remove(q);
        ngx_rbtree_delete(&cache->sh->rbtree, &node->node);
        ngx_slab_free_locked(cache->shpool, node);
    }
}


static ngx_rbtree_key_t
ngx_http_chathistory_auth_rbtree_key(u_char *hash)
{
    ngx_rbtree_key_t  key;

    ngx_memcpy(&key, hash, sizeof(ngx_rbtree_key_t));

    return key;
}


static void
ngx_http_chathistory_auth_rbtree_insert_value(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t                 **p;
    ngx_http_chathistory_auth_node_t   *an, *at;

    an = (ngx_http_chathistory_auth_node_t *) node;

    for ( ;; ) {

        if (node->key != temp->key) {
            p = (node->key < temp->key) ? &temp->left : &temp->right;

        } else {
            at = (ngx_http_chathistory_auth_node_t *) temp;
            p = (ngx_memcmp(an->hash, at->hash, CHATHISTORY_SHA256_LEN) < 0)
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
ngx_http_chathistory_auth_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_chathistory_auth_cache_t  *ocache = data;

    size_t                              len;
    ngx_http_chathistory_auth_cache_t  *cache;

    cache = shm_zone->data;

    if (ocache != NULL) {
        /* a reload keeps what the previous workers knew */
        cache->sh = ocache->sh;
        cache->shpool = ocache->shpool;
        return NGX_OK;
    }

    cache->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        cache->sh = cache->shpool->data;
        return NGX_OK;
    }

    cache->sh = ngx_slab_alloc(cache->shpool,
                               sizeof(ngx_http_chathistory_auth_shctx_t));
    if (cache->sh == NULL) {
        return NGX_ERROR;
    }

    cache->shpool->data = cache->sh;

    ngx_rbtree_init(&cache->sh->rbtree, &cache->sh->sentinel,
                    ngx_http_chathistory_auth_rbtree_insert_value);
    ngx_queue_init(&cache->sh->queue);

    len = sizeof(" in chathistory_auth_cache zone \"\"")
          + shm_zone->shm.name.len;

    cache->shpool->log_ctx = ngx_slab_alloc(cache->shpool, len);
    if (cache->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(cache->shpool->log_ctx, " in chathistory_auth_cache zone "
                "\"%V\"%Z", &shm_zone->shm.name);

    /* a full zone is expected: the oldest keys make room */
    cache->shpool->log_nomem = 0;

    return NGX_OK;
}


const char *
ngx_http_chathistory_auth_org(ngx_http_request_t *r)
{
    ngx_http_chathistory_auth_ctx_t  *ctx;

    ctx = ngx_http_chathistory_auth_get_ctx(r->main);

    if (ctx == NULL || ctx->status != NGX_HTTP_OK) {
        return NULL;
    }

    return (const char *) ctx->org.text;
}


static ngx_int_t
ngx_http_chathistory_auth_org_variable(ngx_http_request_t *r,
    ngx_http_variable_value_t *v, uintptr_t data)
{
    const char  *org;

    org = ngx_http_chathistory_auth_org(r);

    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    if (org == NULL) {
        v->len = 0;
        v->data = (u_char *) "";
        return NGX_OK;
    }

    v->len = NGX_HTTP_CHATHISTORY_UUID_LEN;
    v->data = (u_char *) org;

    return NGX_OK;
}


static ngx_int_t
ngx_http_chathistory_auth_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_chathistory_auth_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


static void *
ngx_http_chathistory_auth_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_chathistory_auth_main_conf_t  *amcf;

    amcf = ngx_pcalloc(cf->pool,
                       sizeof(ngx_http_chathistory_auth_main_conf_t));
    if (amcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     amcf->shm_zone = NULL;
     *     amcf->used = 0;
     */

    return amcf;
}


static void *
ngx_http_chathistory_auth_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_chathistory_auth_loc_conf_t  *alcf;

    alcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_chathistory_auth_loc_conf_t));
    if (alcf == NULL) {
        return NULL;
    }

    alcf->mode = NGX_CONF_UNSET_UINT;

    return alcf;
}


static char *
ngx_http_chathistory_auth_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child)
{
    ngx_http_chathistory_auth_loc_conf_t  *prev = parent;
    ngx_http_chathistory_auth_loc_conf_t  *conf = child;

    ngx_http_chathistory_main_conf_t       *cmcf;
    ngx_http_chathistory_auth_main_conf_t  *amcf;

    ngx_conf_merge_uint_value(conf->mode, prev->mode, CH_AUTH_OFF);

    if (conf->mode == CH_AUTH_OFF) {
        return NGX_CONF_OK;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_chathistory_module);

    if (cmcf->database_url.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"chathistory_auth\" requires "
                           "\"chathistory_database_url\" in the http block");
        return NGX_CONF_ERROR;
    }

    amcf = ngx_http_conf_get_module_main_conf(cf,
                                            ngx_http_chathistory_auth_module);
    amcf->used = 1;

    return NGX_CONF_OK;
}


/*
 * Handlers of a phase run in the reverse order of their registration, and
 * this module's comes after limit_req's: it runs before limit_req does.
 */
static ngx_int_t
ngx_http_chathistory_auth_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt                    *h;
    ngx_http_core_main_conf_t              *core;
    ngx_http_chathistory_auth_main_conf_t  *amcf;

    amcf = ngx_http_conf_get_module_main_conf(cf,
                                            ngx_http_chathistory_auth_module);

    if (!amcf->used) {
        return NGX_OK;
    }

    core = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&core->phases[NGX_HTTP_PREACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_chathistory_auth_handler;

    return NGX_OK;
}


/* chathistory_auth_cache zone=NAME:SIZE [valid=TIME] [invalid=TIME] */
static char *
ngx_http_chathistory_auth_cache_zone(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_chathistory_auth_main_conf_t  *amcf = conf;

    u_char                             *p;
    ssize_t                             size;
    ngx_int_t                           valid, invalid, *t;
    ngx_str_t                          *value, name, s;
    ngx_uint_t                          i;
    ngx_shm_zone_t                     *shm_zone;
    ngx_http_chathistory_auth_cache_t  *cache;

    if (amcf->shm_zone != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;

    size = 0;
    ngx_str_null(&name);
    valid = 30000;
    invalid = 5000;

    for (i = 1; i < cf->args->nelts; i++) {

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

            if (size == NGX_ERROR) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid zone size \"%V\"", &value[i]);
                return NGX_CONF_ERROR;
            }

            if (size < (ssize_t) (8 * ngx_pagesize)) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "zone \"%V\" is too small", &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "valid=", 6) == 0) {
            t = &valid;
            s.data = value[i].data + 6;
            s.len = value[i].len - 6;

        } else if (ngx_strncmp(value[i].data, "invalid=", 8) == 0) {
            t = &invalid;
            s.data = value[i].data + 8;
            s.len = value[i].len - 8;

        } else {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid parameter \"%V\"", &value[i]);
            return NGX_CONF_ERROR;
        }

        *t = ngx_parse_time(&s, 0);

        if (*t == NGX_ERROR) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid time \"%V\"", &value[i]);
            return NGX_CONF_ERROR;
        }
    }

    if (name.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" must have \"zone\" parameter",
                           &cmd->name);
        return NGX_CONF_ERROR;
    }

    cache = ngx_pcalloc(cf->pool, sizeof(ngx_http_chathistory_auth_cache_t));
    if (cache == NULL) {
        return NGX_CONF_ERROR;
    }

    cache->valid = (ngx_msec_t) valid;
    cache->invalid = (ngx_msec_t) invalid;

    shm_zone = ngx_shared_memory_add(cf, &name, size,
                                     &ngx_http_chathistory_auth_module);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if (shm_zone->data != NULL) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "duplicate zone \"%V\"", &name);
        return NGX_CONF_ERROR;
    }

    shm_zone->init = ngx_http_chathistory_auth_init_zone;
    shm_zone->data = cache;

    amcf->shm_zone = shm_zone;

    return NGX_CONF_OK;
}
