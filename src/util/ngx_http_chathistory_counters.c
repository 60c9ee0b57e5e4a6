
/*
 * The counters' shared memory zone: every worker adds to it, and whichever
 * answers chathistory_status reads all of it. It outlives a reload.
 */


#include "ngx_http_chathistory_counters.h"


static ngx_int_t ngx_http_chathistory_counters_zone_init(ngx_shm_zone_t *zone,
    void *data);


static ngx_shm_zone_t                         *ngx_http_chathistory_counters_shm;
static ngx_http_chathistory_counted_t         *ngx_http_chathistory_counters;
static ngx_http_chathistory_counted_worker_t  *ngx_http_chathistory_counters_self;


static ngx_str_t  ngx_http_chathistory_counters_zone_name =
    ngx_string("chathistory_status");


/* the last, the 0 that ends the list, stands for all others */
static const ngx_uint_t  ngx_http_chathistory_counted_codes[] = {
    200, 201, 204, 206, 304, 400, 401, 403, 404, 405, 408, 409, 411, 412,
    413, 414, 415, 416, 429, 431, 444, 499, 500, 501, 502, 503, 504, 0
};


typedef char ngx_http_chathistory_codes_complete[
    sizeof(ngx_http_chathistory_counted_codes)
    / sizeof(ngx_http_chathistory_counted_codes[0])
    == NGX_HTTP_CHATHISTORY_COUNTED_CODES ? 1 : -1];


ngx_int_t
ngx_http_chathistory_counters_zone(ngx_conf_t *cf, ngx_uint_t needed)
{
    ngx_shm_zone_t  *zone;

    /* a reload may leave nothing to count */
    ngx_http_chathistory_counters_shm = NULL;

    if (!needed) {
        return NGX_OK;
    }

    zone = ngx_shared_memory_add(cf, &ngx_http_chathistory_counters_zone_name,
                                 4 * ngx_pagesize
                                 + sizeof(ngx_http_chathistory_counted_t),
                                 &ngx_http_chathistory_counters_zone_name);
    if (zone == NULL) {
        return NGX_ERROR;
    }

    zone->init = ngx_http_chathistory_counters_zone_init;
    ngx_http_chathistory_counters_shm = zone;

    return NGX_OK;
}


/* The counters outlive a reload: a zone of the same size is kept. */
static ngx_int_t
ngx_http_chathistory_counters_zone_init(ngx_shm_zone_t *zone, void *data)
{
    ngx_slab_pool_t  *shpool;

    if (data) {
        zone->data = data;
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) zone->shm.addr;

    zone->data = ngx_slab_calloc(shpool,
                                 sizeof(ngx_http_chathistory_counted_t));
    if (zone->data == NULL) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_http_chathistory_counters_init_process(ngx_cycle_t *cycle)
{
    ngx_http_chathistory_counted_worker_t  *self;

    if (ngx_http_chathistory_counters_shm == NULL) {
        return NGX_OK;
    }

    ngx_http_chathistory_counters = ngx_http_chathistory_counters_shm->data;

    if (ngx_worker < NGX_HTTP_CHATHISTORY_COUNTED_WORKERS) {
        self = &ngx_http_chathistory_counters->workers[ngx_worker];
        ngx_memzero(self, sizeof(ngx_http_chathistory_counted_worker_t));
        self->pid = ngx_pid;
        ngx_http_chathistory_counters_self = self;
    }

    return NGX_OK;
}


void
ngx_http_chathistory_counters_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_chathistory_counted_worker_t  *self;

    self = ngx_http_chathistory_counters_self;

    /* after a reload, a new worker may have the slot already */
    if (self && self->pid == ngx_pid) {
        ngx_memzero(self, sizeof(ngx_http_chathistory_counted_worker_t));
    }

    ngx_http_chathistory_counters_self = NULL;
}


void
ngx_http_chathistory_count(ngx_http_chathistory_stat_e what)
{
    if (ngx_http_chathistory_counters) {
        (void) ngx_atomic_fetch_add(
                          &ngx_http_chathistory_counters->counters[what], 1);
    }
}


/* A request to the API, by its route and its status, once it is done. */
void
ngx_http_chathistory_count_request(ngx_uint_t route, ngx_uint_t status)
{
    ngx_uint_t  i;

    if (ngx_http_chathistory_counters == NULL) {
        return;
    }

    if (route >= NGX_HTTP_CHATHISTORY_COUNTED_ROUTES) {
        route = 0;
    }

    for (i = 0; ngx_http_chathistory_counted_codes[i]; i++) {
        if (ngx_http_chathistory_counted_codes[i] == status) {
            break;
        }
    }

    (void) ngx_atomic_fetch_add(
                        &ngx_http_chathistory_counters->requests[route][i], 1);
}


/* This worker's pool, as it is now. */
void
ngx_http_chathistory_count_pool(ngx_uint_t connections, ngx_uint_t idle,
    ngx_uint_t waiting)
{
    ngx_http_chathistory_counted_worker_t  *self;

    self = ngx_http_chathistory_counters_self;

    if (self == NULL || self->pid != ngx_pid) {
        return;
    }

    self->connections = connections;
    self->busy = connections - idle;
    self->waiting = waiting;
}


void
ngx_http_chathistory_count_spool(ngx_uint_t messages)
{
    if (ngx_http_chathistory_counters) {
        ngx_http_chathistory_counters->spool_messages = messages;
        ngx_http_chathistory_counters->spool_seen = 1;
    }
}


ngx_http_chathistory_counted_t *
ngx_http_chathistory_counted(void)
{
    return ngx_http_chathistory_counters;
}


ngx_uint_t
ngx_http_chathistory_counted_code(ngx_uint_t i)
{
    return ngx_http_chathistory_counted_codes[i];
}
