
/*
 * Configuration shared by the parts of the chathistory module.
 */


#ifndef _NGX_HTTP_CHATHISTORY_MODULE_H_INCLUDED_
#define _NGX_HTTP_CHATHISTORY_MODULE_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_chathistory_util.h"


/* which API reads may go to chathistory_database_replica_url */
#define NGX_HTTP_CHATHISTORY_REPLICA_SEARCH    0x0001
#define NGX_HTTP_CHATHISTORY_REPLICA_SESSIONS  0x0002
#define NGX_HTTP_CHATHISTORY_REPLICA_MESSAGES  0x0004


/* where a pool connects: libpq's keywords and values, host names resolved */
typedef struct {
    const char                **keywords;
    const char                **values;
    ngx_str_t                   target;         /* host:port/db, for logs */
} ngx_http_chathistory_db_t;


typedef struct {
    ngx_str_t                   database_url;
    ngx_http_chathistory_db_t   db;

    /* a read replica (or several, libpq multi-host), its own pool */
    ngx_str_t                   replica_url;
    ngx_http_chathistory_db_t   replica;
    ngx_uint_t                  replica_reads;
    ngx_msec_t                  replica_max_lag;

    /* named prepared statements; off behind a transaction-mode pooler */
    ngx_flag_t                  prepare;

    ngx_uint_t                  pool_size;
    ngx_uint_t                  queue_size;
    ngx_msec_t                  queue_timeout;
    ngx_msec_t                  connect_timeout;
    ngx_msec_t                  query_timeout;
    ngx_msec_t                  keepalive_timeout;

    /* recording: where messages wait while the database is away */
    ngx_str_t                   spool_path;
    ngx_uint_t                  spool_max;
    ngx_msec_t                  flush_interval;
    ngx_str_t                   thread_pool_name;
    ngx_thread_pool_t          *thread_pool;
    ngx_flag_t                  capture_used;
    ngx_flag_t                  status_used;

    /* $request_id, for the X-Request-Id header and the JSON errors */
    ngx_int_t                   request_id_index;
} ngx_http_chathistory_main_conf_t;


typedef struct {
    ngx_flag_t                  history_enabled;
    ngx_str_t                   audio_storage_path;
    ngx_str_t                   embedding_provider;
    ngx_str_t                   embedding_model;
    ngx_str_t                   embedding_url;

    ngx_flag_t                  api;
    ngx_str_t                   api_prefix;     /* the location's name */
    size_t                      api_max_body;

    /* chathistory_cors_origin: NULL for off, else the origins allowed
     * (ngx_str_t), "*" among them for any */
    ngx_array_t                *cors_origins;
    time_t                      cors_max_age;
} ngx_http_chathistory_loc_conf_t;


extern ngx_module_t  ngx_http_chathistory_module;


#endif /* _NGX_HTTP_CHATHISTORY_MODULE_H_INCLUDED_ */
