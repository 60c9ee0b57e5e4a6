
/*
 * ngx_http_chathistory_module: chat history and semantic search for a
 * speech translation service, served from nginx workers against
 * PostgreSQL. Directives, configuration and process hooks.
 */


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <libpq-fe.h>

#include "ngx_http_chathistory_module.h"
#include "ngx_http_chathistory_api.h"
#include "ngx_http_chathistory_cors.h"
#include "ngx_http_chathistory_embed.h"
#include "ngx_http_chathistory_pg.h"
#include "ngx_http_chathistory_record.h"
#include "ngx_http_chathistory_counters.h"
#include "ngx_http_chathistory_status.h"


static ngx_int_t ngx_http_chathistory_postconfiguration(ngx_conf_t *cf);
static void *ngx_http_chathistory_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_chathistory_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_chathistory_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_chathistory_merge_loc_conf(ngx_conf_t *cf,
    void *parent, void *child);
static ngx_int_t ngx_http_chathistory_init_process(ngx_cycle_t *cycle);
static void ngx_http_chathistory_exit_process(ngx_cycle_t *cycle);
static char *ngx_http_chathistory_database_url(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_chathistory_replica_url(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_http_chathistory_db_parse(ngx_conf_t *cf, ngx_str_t *name,
    ngx_str_t *url, ngx_http_chathistory_db_t *db);
static ngx_int_t ngx_http_chathistory_conninfo(ngx_conf_t *cf,
    ngx_str_t *name, ngx_http_chathistory_db_t *db, PQconninfoOption *opts);
static ngx_int_t ngx_http_chathistory_resolve_hosts(ngx_conf_t *cf,
    ngx_str_t *name, const char *hosts, const char *ports,
    const char **hostaddrs);
static ngx_int_t ngx_http_chathistory_resolve_host(ngx_conf_t *cf,
    ngx_str_t *name, ngx_str_t *host, ngx_str_t *port, u_char **p);
static void ngx_http_chathistory_list_item(const char *list, ngx_uint_t n,
    ngx_str_t *item);
static char *ngx_http_chathistory_api(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_chathistory_flush_bound(ngx_conf_t *cf, void *post,
    void *data);


static ngx_conf_num_bounds_t  ngx_http_chathistory_pool_bounds = {
    ngx_conf_check_num_bounds, 1, 64
};

static ngx_conf_num_bounds_t  ngx_http_chathistory_queue_bounds = {
    ngx_conf_check_num_bounds, 0, 65536
};

static ngx_conf_post_t  ngx_http_chathistory_flush_post = {
    ngx_http_chathistory_flush_bound
};

static ngx_conf_bitmask_t  ngx_http_chathistory_replica_reads[] = {
    { ngx_string("search"), NGX_HTTP_CHATHISTORY_REPLICA_SEARCH },
    { ngx_string("sessions"), NGX_HTTP_CHATHISTORY_REPLICA_SESSIONS },
    { ngx_string("messages"), NGX_HTTP_CHATHISTORY_REPLICA_MESSAGES },
    { ngx_null_string, 0 }
};


static ngx_str_t  ngx_http_chathistory_request_id_name =
    ngx_string("request_id");


static ngx_command_t  ngx_http_chathistory_commands[] = {

    { ngx_string("chathistory_database_url"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_chathistory_database_url,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("chathistory_database_replica_url"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_chathistory_replica_url,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("chathistory_database_replica_reads"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_conf_set_bitmask_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_chathistory_main_conf_t, replica_reads),
      &ngx_http_chathistory_replica_reads },

    { ngx_string("chathistory_database_replica_max_lag"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_chathistory_main_conf_t, replica_max_lag),
      NULL },

    { ngx_string("chathistory_database_prepare"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_chathistory_main_conf_t, prepare),
      NULL },

    { ngx_string("chathistory_database_pool_size"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_chathistory_main_conf_t, pool_size),
      &ngx_http_chathistory_pool_bounds },

    { ngx_string("chathistory_database_queue"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_chathistory_main_conf_t, queue_size),
      &ngx_http_chathistory_queue_bounds },

    { ngx_string("chathistory_database_queue_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_chathistory_main_conf_t, queue_timeout),
      NULL },

    { ngx_string("chathistory_database_connect_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_chathistory_main_conf_t, connect_timeout),
      NULL },

    { ngx_string("chathistory_database_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_chathistory_main_conf_t, query_timeout),
      NULL },

    { ngx_string("chathistory_database_keepalive_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_chathistory_main_conf_t, keepalive_timeout),
      NULL },

    { ngx_string("chathistory_spool_path"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_chathistory_main_conf_t, spool_path),
      NULL },

    { ngx_string("chathistory_spool_max_messages"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_chathistory_main_conf_t, spool_max),
      NULL },

    { ngx_string("chathistory_capture_flush"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_chathistory_main_conf_t, flush_interval),
      &ngx_http_chathistory_flush_post },

    { ngx_string("chathistory_thread_pool"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_chathistory_main_conf_t, thread_pool_name),
      NULL },

    { ngx_string("chathistory_history_enabled"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_chathistory_loc_conf_t, history_enabled),
      NULL },

    { ngx_string("chathistory_audio_storage_path"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_chathistory_loc_conf_t, audio_storage_path),
      NULL },

    { ngx_string("chathistory_embedding_provider"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_chathistory_loc_conf_t, embedding_provider),
      NULL },

    { ngx_string("chathistory_embedding_model"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_chathistory_loc_conf_t, embedding_model),
      NULL },

    { ngx_string("chathistory_embedding_url"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_chathistory_loc_conf_t, embedding_url),
      NULL },

    { ngx_string("chathistory_api"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_chathistory_api,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("chathistory_status"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_chathistory_status,
      0,
      0,
      NULL },

    { ngx_string("chathistory_api_max_body_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_chathistory_loc_conf_t, api_max_body),
      NULL },

    { ngx_string("chathistory_cors_origin"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_http_chathistory_cors_origin,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("chathistory_cors_max_age"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_chathistory_loc_conf_t, cors_max_age),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_chathistory_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_http_chathistory_postconfiguration, /* postconfiguration */

    ngx_http_chathistory_create_main_conf, /* create main configuration */
    ngx_http_chathistory_init_main_conf,   /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_chathistory_create_loc_conf,  /* create location configuration */
    ngx_http_chathistory_merge_loc_conf    /* merge location configuration */
};


ngx_module_t  ngx_http_chathistory_module = {
    NGX_MODULE_V1,
    &ngx_http_chathistory_module_ctx,      /* module context */
    ngx_http_chathistory_commands,         /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_chathistory_init_process,     /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_chathistory_exit_process,     /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static ngx_int_t
ngx_http_chathistory_postconfiguration(ngx_conf_t *cf)
{
    ngx_http_chathistory_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_chathistory_module);

    if (ngx_http_chathistory_api_init(cf) != NGX_OK
        || ngx_http_chathistory_cors_init(cf) != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* indexed, so that it is made once: the header, the body and the
     * access log give the same */
    cmcf->request_id_index = ngx_http_get_variable_index(cf,
                                      &ngx_http_chathistory_request_id_name);
    if (cmcf->request_id_index == NGX_ERROR) {
        return NGX_ERROR;
    }

    return ngx_http_chathistory_counters_zone(cf, cmcf->database_url.len
                                                  || cmcf->status_used);
}


static void *
ngx_http_chathistory_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_chathistory_main_conf_t  *cmcf;

    cmcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_chathistory_main_conf_t));
    if (cmcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     cmcf->database_url = { 0, NULL };
     *     cmcf->db = { NULL, NULL, { 0, NULL } };
     *     cmcf->replica_url = { 0, NULL };
     *     cmcf->replica = { NULL, NULL, { 0, NULL } };
     *     cmcf->replica_reads = 0;
     */

    cmcf->replica_max_lag = NGX_CONF_UNSET_MSEC;
    cmcf->prepare = NGX_CONF_UNSET;

    cmcf->pool_size = NGX_CONF_UNSET_UINT;
    cmcf->queue_size = NGX_CONF_UNSET_UINT;
    cmcf->queue_timeout = NGX_CONF_UNSET_MSEC;
    cmcf->connect_timeout = NGX_CONF_UNSET_MSEC;
    cmcf->query_timeout = NGX_CONF_UNSET_MSEC;
    cmcf->keepalive_timeout = NGX_CONF_UNSET_MSEC;
    cmcf->spool_max = NGX_CONF_UNSET_UINT;
    cmcf->flush_interval = NGX_CONF_UNSET_MSEC;

    return cmcf;
}


static char *
ngx_http_chathistory_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_chathistory_main_conf_t  *cmcf = conf;

    ngx_conf_init_uint_value(cmcf->pool_size, 8);
    ngx_conf_init_uint_value(cmcf->queue_size, 1024);
    ngx_conf_init_msec_value(cmcf->queue_timeout, 3000);
    ngx_conf_init_msec_value(cmcf->connect_timeout, 3000);
    ngx_conf_init_msec_value(cmcf->query_timeout, 10000);
    ngx_conf_init_msec_value(cmcf->keepalive_timeout, 60000);
    ngx_conf_init_uint_value(cmcf->spool_max, 10000);
    ngx_conf_init_msec_value(cmcf->flush_interval, 10);
    ngx_conf_init_msec_value(cmcf->replica_max_lag, 5000);
    ngx_conf_init_value(cmcf->prepare, 1);

    if (cmcf->replica_reads == 0) {
        cmcf->replica_reads = NGX_HTTP_CHATHISTORY_REPLICA_SEARCH;
    }

    if (cmcf->replica_url.len && cmcf->database_url.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"chathistory_database_replica_url\" requires "
                           "\"chathistory_database_url\"");
        return NGX_CONF_ERROR;
    }

    if (cmcf->thread_pool_name.data == NULL) {
        ngx_str_set(&cmcf->thread_pool_name, "default");
    }

    if (cmcf->spool_path.len
        && ngx_conf_full_name(cf->cycle, &cmcf->spool_path, 0) != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


/* A quitting worker waits for its last batch: not for long. */
static char *
ngx_http_chathistory_flush_bound(ngx_conf_t *cf, void *post, void *data)
{
    ngx_msec_t  *interval = data;

    if (*interval > 1000) {
        return "must not be longer than 1s";
    }

    return NGX_CONF_OK;
}


static void *
ngx_http_chathistory_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_chathistory_loc_conf_t  *clcf;

    clcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_chathistory_loc_conf_t));
    if (clcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     clcf->audio_storage_path = { 0, NULL };
     *     clcf->embedding_provider = { 0, NULL };
     *     clcf->embedding_model = { 0, NULL };
     *     clcf->embedding_url = { 0, NULL };
     *     clcf->api = 0;
     *     clcf->api_prefix = { 0, NULL };
     */

    clcf->history_enabled = NGX_CONF_UNSET;
    clcf->api_max_body = NGX_CONF_UNSET_SIZE;
    clcf->cors_origins = NGX_CONF_UNSET_PTR;
    clcf->cors_max_age = NGX_CONF_UNSET;

    return clcf;
}


static char *
ngx_http_chathistory_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_chathistory_loc_conf_t  *prev = parent;
    ngx_http_chathistory_loc_conf_t  *conf = child;

    ngx_http_core_loc_conf_t          *core;
    ngx_http_chathistory_main_conf_t  *cmcf;

    ngx_conf_merge_value(conf->history_enabled, prev->history_enabled, 1);
    ngx_conf_merge_str_value(conf->audio_storage_path,
                             prev->audio_storage_path, "");
    ngx_conf_merge_str_value(conf->embedding_provider,
                             prev->embedding_provider, "hash");
    ngx_conf_merge_str_value(conf->embedding_model,
                             prev->embedding_model, "");
    ngx_conf_merge_str_value(conf->embedding_url, prev->embedding_url, "");
    ngx_conf_merge_size_value(conf->api_max_body, prev->api_max_body,
                              16 * 1024);
    ngx_conf_merge_ptr_value(conf->cors_origins, prev->cors_origins, NULL);
    ngx_conf_merge_sec_value(conf->cors_max_age, prev->cors_max_age, 600);

    if (!conf->api) {
        return NGX_CONF_OK;
    }

    /* queries are embedded here, with the model the worker embeds with */
    if (ngx_http_chathistory_embed_check(cf, conf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_chathistory_module);

    if (cmcf->database_url.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"chathistory_api\" requires "
                           "\"chathistory_database_url\" in the http block");
        return NGX_CONF_ERROR;
    }

    /* JSON bodies are parsed in memory: never let one go to a temp file */
    core = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (core->client_body_buffer_size < conf->api_max_body) {
        core->client_body_buffer_size = conf->api_max_body;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_http_chathistory_init_process(ngx_cycle_t *cycle)
{
    ngx_http_chathistory_main_conf_t  *cmcf;

    cmcf = ngx_http_cycle_get_module_main_conf(cycle,
                                               ngx_http_chathistory_module);

    if (cmcf == NULL) {
        return NGX_OK;
    }

    if (ngx_http_chathistory_counters_init_process(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    if (cmcf->database_url.len == 0) {
        return NGX_OK;
    }

    if (ngx_http_chathistory_pg_pool_init(cycle, cmcf) != NGX_OK
        || ngx_http_chathistory_pg_replica_init(cycle) != NGX_OK)
    {
        return NGX_ERROR;
    }

#if (NGX_THREADS)
    if (cmcf->capture_used
        && ngx_http_chathistory_record_init(cycle, cmcf) != NGX_OK)
    {
        return NGX_ERROR;
    }
#endif

    return NGX_OK;
}


static void
ngx_http_chathistory_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_chathistory_record_exit();
    ngx_http_chathistory_pg_replica_done();
    ngx_http_chathistory_pg_pool_done(cycle);
    ngx_http_chathistory_counters_exit_process(cycle);
}


/*
 * A libpq connection string or postgresql:// URL, checked here so that a
 * mistake fails "nginx -t", not the first request.
 */
static char *
ngx_http_chathistory_database_url(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_chathistory_main_conf_t  *cmcf = conf;

    ngx_str_t  *value;

    if (cmcf->database_url.data != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;
    cmcf->database_url = value[1];

    return ngx_http_chathistory_db_parse(cf, &cmd->name, &value[1],
                                         &cmcf->db);
}


static char *
ngx_http_chathistory_replica_url(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_http_chathistory_main_conf_t  *cmcf = conf;

    ngx_str_t  *value;

    if (cmcf->replica_url.data != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;
    cmcf->replica_url = value[1];

    return ngx_http_chathistory_db_parse(cf, &cmd->name, &value[1],
                                         &cmcf->replica);
}


static char *
ngx_http_chathistory_db_parse(ngx_conf_t *cf, ngx_str_t *name,
    ngx_str_t *url, ngx_http_chathistory_db_t *db)
{
    char              *err;
    PQconninfoOption  *opts;

    err = NULL;
    opts = PQconninfoParse((char *) url->data, &err);

    if (opts == NULL) {
        /* libpq's message quotes no password: it names the bad part */
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid %V: %s", name,
                           err ? err : "out of memory");
        PQfreemem(err);
        return NGX_CONF_ERROR;
    }

    if (ngx_http_chathistory_conninfo(cf, name, db, opts) != NGX_OK) {
        PQconninfoFree(opts);
        return NGX_CONF_ERROR;
    }

    PQconninfoFree(opts);

    return NGX_CONF_OK;
}


/* Keep the options as keyword/value arrays, with host names resolved. */
static ngx_int_t
ngx_http_chathistory_conninfo(ngx_conf_t *cf, ngx_str_t *name,
    ngx_http_chathistory_db_t *db, PQconninfoOption *opts)
{
    ngx_uint_t         n, i;
    const char        *host, *hostaddr, *port, *dbname;
    PQconninfoOption  *o;

    n = 0;
    host = NULL;
    hostaddr = NULL;
    port = "5432";
    dbname = "";

    for (o = opts; o->keyword; o++) {
        if (o->val == NULL) {
            continue;
        }

        n++;

        if (ngx_strcmp(o->keyword, "host") == 0) {
            host = o->val;

        } else if (ngx_strcmp(o->keyword, "hostaddr") == 0) {
            hostaddr = o->val;

        } else if (ngx_strcmp(o->keyword, "port") == 0) {
            port = o->val;

        } else if (ngx_strcmp(o->keyword, "dbname") == 0) {
            dbname = o->val;
        }
    }

    /* libpq resolves names in PQconnectStart, which would block workers */
    if (hostaddr == NULL && host != NULL) {
        if (ngx_http_chathistory_resolve_hosts(cf, name, host, port,
                                               &hostaddr)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    db->keywords = ngx_pcalloc(cf->pool, (n + 3) * sizeof(char *));
    db->values = ngx_pcalloc(cf->pool, (n + 3) * sizeof(char *));

    if (db->keywords == NULL || db->values == NULL) {
        return NGX_ERROR;
    }

    i = 0;

    for (o = opts; o->keyword; o++) {
        if (o->val == NULL || ngx_strcmp(o->keyword, "hostaddr") == 0) {
            continue;
        }

        db->keywords[i] = ngx_http_chathistory_strdup(cf->pool, o->keyword);
        db->values[i] = ngx_http_chathistory_strdup(cf->pool, o->val);
        i++;
    }

    if (hostaddr != NULL) {
        db->keywords[i] = "hostaddr";
        db->values[i] = ngx_http_chathistory_strdup(cf->pool, hostaddr);
        i++;
    }

    db->keywords[i] = "fallback_application_name";
    db->values[i] = "nginx chathistory";

    db->target.data = ngx_pnalloc(cf->pool, 512);
    if (db->target.data == NULL) {
        return NGX_ERROR;
    }

    db->target.len = ngx_snprintf(db->target.data, 512, "%s:%s/%s",
                                  host ? host : "localhost", port, dbname)
                     - db->target.data;

    for (i = 0; db->keywords[i]; i++) {
        if (db->values[i] == NULL) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


/*
 * Resolve the host names now, as proxy_pass does: one address each, in a
 * hostaddr list of the same length (libpq tries the hosts in order, and
 * with target_session_attrs takes the first that fits). Sockets ("/...")
 * get an empty entry, which leaves them to libpq.
 */
static ngx_int_t
ngx_http_chathistory_resolve_hosts(ngx_conf_t *cf, ngx_str_t *name,
    const char *hosts, const char *ports, const char **hostaddrs)
{
    u_char     *p, *start;
    size_t      len;
    ngx_str_t   host, port, portlist;
    ngx_uint_t  nhosts, nports, i;

    len = ngx_strlen(hosts);
    nhosts = 1;
    for (i = 0; i < len; i++) {
        nhosts += (hosts[i] == ',');
    }

    portlist.data = (u_char *) ports;
    portlist.len = ngx_strlen(ports);
    nports = 1;
    for (i = 0; i < portlist.len; i++) {
        nports += (ports[i] == ',');
    }

    if (nports != 1 && nports != nhosts) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%V: %ui hosts but %ui ports", name, nhosts,
                           nports);
        return NGX_ERROR;
    }

    start = ngx_pnalloc(cf->pool, nhosts * (NGX_SOCKADDR_STRLEN + 1) + 1);
    if (start == NULL) {
        return NGX_ERROR;
    }

    p = start;

    for (i = 0; i < nhosts; i++) {
        ngx_http_chathistory_list_item(hosts, i, &host);
        ngx_http_chathistory_list_item(ports, nports == 1 ? 0 : i, &port);

        if (i) {
            *p++ = ',';
        }

        if (ngx_http_chathistory_resolve_host(cf, name, &host, &port, &p)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    *p = '\0';
    *hostaddrs = (char *) start;

    return NGX_OK;
}


static ngx_int_t
ngx_http_chathistory_resolve_host(ngx_conf_t *cf, ngx_str_t *name,
    ngx_str_t *host, ngx_str_t *port, u_char **p)
{
    ngx_url_t  u;

    if (host->len == 0 || host->data[0] == '/' || host->data[0] == '@') {
        return NGX_OK;
    }

    ngx_memzero(&u, sizeof(ngx_url_t));

    u.host = *host;
    u.port = (in_port_t) (port->len ? ngx_atoi(port->data, port->len) : 5432);

    if (ngx_inet_resolve_host(cf->pool, &u) != NGX_OK || u.naddrs == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%V: host \"%V\" not found",
                           name, host);
        return NGX_ERROR;
    }

    *p += ngx_sock_ntop(u.addrs[0].sockaddr, u.addrs[0].socklen, *p,
                        NGX_SOCKADDR_STRLEN, 0);

    return NGX_OK;
}


/* The n-th item of a comma-separated list, as libpq splits them. */
static void
ngx_http_chathistory_list_item(const char *list, ngx_uint_t n,
    ngx_str_t *item)
{
    const char  *p, *end;

    for (p = list; n && *p; p++) {
        if (*p == ',') {
            n--;
        }
    }

    end = ngx_strchr(p, ',');

    item->data = (u_char *) p;
    item->len = end ? (size_t) (end - p) : ngx_strlen(p);
}


static char *
ngx_http_chathistory_api(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_chathistory_loc_conf_t  *clcf = conf;

    ngx_http_core_loc_conf_t  *core;

    if (clcf->api) {
        return "is duplicate";
    }

    core = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

#if (NGX_PCRE)
    if (core->regex != NULL) {
        return "must be in a prefix location";
    }
#endif

    if (core->named || core->noname) {
        return "must be in a prefix location";
    }

    clcf->api = 1;
    clcf->api_prefix = core->name;
    core->handler = ngx_http_chathistory_api_handler;

    return NGX_CONF_OK;
}
