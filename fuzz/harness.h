
/*
 * What the fuzz targets share: a request with no connection behind it, a
 * strict UTF-8 check, and a failed check that stops the run.
 */


#ifndef _HARNESS_H_INCLUDED_
#define _HARNESS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_chathistory_module.h"
#include "ngx_http_chathistory_api.h"


/* the organization a scoped (/v1) request belongs to */
#define HARNESS_ORG  "0190a5c4-0000-7000-8000-0000000000aa"


/* a broken invariant is a crash for libFuzzer, with the reason printed */
#define harness_check(cond)                                                  \
    do {                                                                      \
        if (!(cond)) {                                                        \
            harness_fail(__FILE__, __LINE__, #cond);                          \
        }                                                                     \
    } while (0)


/* the statement a handler last asked for, in place of the database */
typedef struct {
    ngx_uint_t                           sent;
    ngx_uint_t                           stmt;
    ngx_uint_t                           nparams;
} harness_query_t;


extern ngx_log_t                         harness_log;
extern harness_query_t                   harness_query;
extern ngx_http_chathistory_loc_conf_t   harness_loc_conf;


void harness_fail(const char *file, int line, const char *what)
    __attribute__ ((noreturn));

/* once, from LLVMFuzzerInitialize(): what nginx sets up before requests */
void harness_init(void);

ngx_pool_t *harness_pool(void);
ngx_http_request_t *harness_request(void);
void harness_request_free(ngx_http_request_t *r);
ngx_table_elt_t *harness_header(ngx_http_request_t *r, u_char *name,
    size_t name_len, u_char *value, size_t value_len);

/* an API request's ctx, as the router leaves it; scope_org may be NULL */
ngx_http_chathistory_api_ctx_t *harness_api_ctx(ngx_http_request_t *r,
    const char *scope_org);

/* a handler's answer: its statement went out, or the client is told why */
void harness_check_answer(ngx_int_t rc, ngx_http_chathistory_api_ctx_t *ctx);

/* what PostgreSQL takes as UTF-8 text: RFC 3629, no surrogates, no NUL */
ngx_int_t harness_utf8(const u_char *s, size_t len);


#endif /* _HARNESS_H_INCLUDED_ */
