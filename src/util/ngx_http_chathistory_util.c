
/*
 * What every part of the module uses: its own timers, NUL-terminated
 * copies, and handing freed memory back to the system.
 */


#if (NGX_LINUX && defined __GLIBC__)
#include <malloc.h>
#endif

#include "ngx_http_chathistory_util.h"


#define CH_MEMORY_TRIM_INTERVAL  10000


/*
 * The module's own timers (batches, the spool, audio, memory) have no
 * connection; nginx's timer code logs the fd of an event's connection, so
 * each points at one that has none. A cancelable timer does not hold a
 * quitting worker back.
 */
void
ngx_http_chathistory_timer_init(ngx_event_t *ev, ngx_event_handler_pt handler,
    ngx_log_t *log, ngx_uint_t cancelable)
{
    static ngx_connection_t  none;

    none.fd = (ngx_socket_t) -1;

    ev->data = &none;
    ev->handler = handler;
    ev->log = log;
    ev->cancelable = cancelable;
}


/* A C string of the pool's, for libpq and the like. */
char *
ngx_http_chathistory_strdup(ngx_pool_t *pool, const char *s)
{
    size_t   len;
    u_char  *p;

    len = ngx_strlen(s) + 1;

    p = ngx_pnalloc(pool, len);
    if (p == NULL) {
        return NULL;
    }

    ngx_memcpy(p, s, len);

    return (char *) p;
}


/*
 * A worker's freed memory, handed back to the system. glibc's free()
 * returns memory to the kernel only from the top of the heap; what is
 * freed below stays resident for the life of the process. After a burst
 * (the database behind: records piling up in the batches and the spool's
 * queue, requests waiting for a connection) a worker would keep the
 * burst's high-water mark. So, like jemalloc's decay, the free pages go
 * back some seconds after the module last worked, and every so often
 * while it works: one malloc_trim() (tens of microseconds on a worker's
 * heap of a few megabytes) at most every CH_MEMORY_TRIM_INTERVAL, and
 * none while the worker is idle.
 */


#if (NGX_LINUX && defined __GLIBC__)

static void ngx_http_chathistory_memory_trim(ngx_event_t *ev);


static ngx_event_t  ngx_http_chathistory_memory_event;


void
ngx_http_chathistory_memory_used(void)
{
    ngx_event_t  *ev;

    ev = &ngx_http_chathistory_memory_event;

    if (ev->timer_set) {
        return;
    }

    /* the cycle's log: a reload without a master process replaces it */
    ngx_http_chathistory_timer_init(ev, ngx_http_chathistory_memory_trim,
                                    ngx_cycle->log, 1);

    ngx_add_timer(ev, CH_MEMORY_TRIM_INTERVAL);
}


static void
ngx_http_chathistory_memory_trim(ngx_event_t *ev)
{
    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, ev->log, 0,
                   "chathistory: handing free memory back");

    (void) malloc_trim(0);
}

#else

void
ngx_http_chathistory_memory_used(void)
{
    /* other allocators return memory by themselves, or not at all */
}

#endif
