
/*
 * A request as the module's parsers see it: a pool, a log, the module's
 * ctx and configuration slots, header lists; no connection, no events.
 */


#include <stdio.h>
#include <stdlib.h>

#include "harness.h"
#include "ngx_http_chathistory_auth.h"


/* the module and its two companions get the first ctx and conf slots */
#define HARNESS_MODULES  3


extern ngx_module_t  ngx_http_chathistory_capture_module;


static ngx_open_file_t  harness_log_file;
static ngx_cycle_t      harness_cycle;

/* level 0: nothing is written, the parsers' own logging still runs */
ngx_log_t  harness_log;

ngx_http_chathistory_loc_conf_t  harness_loc_conf = {
    1,                                      /* history_enabled */
    ngx_null_string,                        /* audio_storage_path */
    ngx_string("hash"),                     /* embedding_provider */
    ngx_string("hash"),                     /* embedding_model */
    ngx_null_string,                        /* embedding_url */
    1,                                      /* api */
    ngx_string("/api"),                     /* api_prefix */
    64 * 1024,                              /* api_max_body */
    NULL,                                   /* cors_origins */
    600                                     /* cors_max_age */
};


void
harness_fail(const char *file, int line, const char *what)
{
    fprintf(stderr, "%s:%d: check failed: %s\n", file, line, what);
    abort();
}


void
harness_init(void)
{
    ngx_pagesize = getpagesize();
    ngx_cacheline_size = NGX_CPU_CACHE_LINE;

    ngx_time_init();

    harness_log_file.fd = ngx_stderr;
    harness_log.file = &harness_log_file;
    harness_log.log_level = 0;
    harness_cycle.log = &harness_log;
    ngx_cycle = &harness_cycle;

    /* what ngx_count_modules() would give them in a real nginx */
    ngx_http_chathistory_module.ctx_index = 0;
    ngx_http_chathistory_auth_module.ctx_index = 1;
    ngx_http_chathistory_capture_module.ctx_index = 2;
}


/*
 * A pool with no room for small allocations: every ngx_palloc() is its
 * own malloc(), so AddressSanitizer sees any overrun of one.
 */
ngx_pool_t *
harness_pool(void)
{
    ngx_pool_t  *pool;

    pool = ngx_create_pool(sizeof(ngx_pool_t), &harness_log);
    harness_check(pool != NULL);

    return pool;
}


ngx_http_request_t *
harness_request(void)
{
    ngx_pool_t          *pool;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    pool = harness_pool();

    r = ngx_pcalloc(pool, sizeof(ngx_http_request_t));
    c = ngx_pcalloc(pool, sizeof(ngx_connection_t));
    harness_check(r != NULL && c != NULL);

    c->pool = pool;
    c->log = &harness_log;

    r->pool = pool;
    r->connection = c;
    r->main = r;
    r->method = NGX_HTTP_GET;

    r->ctx = ngx_pcalloc(pool, sizeof(void *) * HARNESS_MODULES);
    r->main_conf = ngx_pcalloc(pool, sizeof(void *) * HARNESS_MODULES);
    r->srv_conf = ngx_pcalloc(pool, sizeof(void *) * HARNESS_MODULES);
    r->loc_conf = ngx_pcalloc(pool, sizeof(void *) * HARNESS_MODULES);
    harness_check(r->ctx && r->main_conf && r->srv_conf && r->loc_conf);

    r->loc_conf[ngx_http_chathistory_module.ctx_index] = &harness_loc_conf;

    harness_check(ngx_list_init(&r->headers_in.headers, pool, 4,
                                sizeof(ngx_table_elt_t))
                  == NGX_OK);
    harness_check(ngx_list_init(&r->headers_out.headers, pool, 4,
                                sizeof(ngx_table_elt_t))
                  == NGX_OK);

    return r;
}


void
harness_request_free(ngx_http_request_t *r)
{
    ngx_destroy_pool(r->pool);
}


ngx_table_elt_t *
harness_header(ngx_http_request_t *r, u_char *name, size_t name_len,
    u_char *value, size_t value_len)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_in.headers);
    harness_check(h != NULL);

    h->hash = 1;
    h->key.data = name;
    h->key.len = name_len;
    h->value.data = value;
    h->value.len = value_len;
    h->lowcase_key = name;

    return h;
}
