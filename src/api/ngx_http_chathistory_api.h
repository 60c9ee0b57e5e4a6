
/*
 * The JSON API: routing of /api/... and /v1/... requests to resource
 * handlers, and what those handlers share.
 */


#ifndef _NGX_HTTP_CHATHISTORY_API_H_INCLUDED_
#define _NGX_HTTP_CHATHISTORY_API_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <cjson/cJSON.h>

#include "ngx_http_chathistory_module.h"
#include "ngx_http_chathistory_pg.h"
#include "ngx_http_chathistory_uuid.h"


#define NGX_HTTP_CHATHISTORY_MAX_SEGMENTS  6


typedef struct {
    ngx_str_t                     segments[NGX_HTTP_CHATHISTORY_MAX_SEGMENTS];
    ngx_uint_t                    nsegments;

    ngx_uint_t                    route;     /* 1-based; 0: none */
    ngx_http_chathistory_uuid_t   session_id;
    ngx_http_chathistory_uuid_t   message_id;

    /* the organization a caller is confined to; NULL on /api */
    const char                   *scope_org;

    cJSON                        *body;

    /* why a handler refused the request, sent once it returns */
    const char                   *error;
    ngx_int_t                   (*handler)(ngx_http_request_t *r);
} ngx_http_chathistory_api_ctx_t;


ngx_int_t ngx_http_chathistory_api_handler(ngx_http_request_t *r);

/* the log phase's counting of the API's requests */
ngx_int_t ngx_http_chathistory_api_init(ngx_conf_t *cf);

/* the pattern of the n-th route, "sessions/:s" (1-based), NULL past them */
const char *ngx_http_chathistory_api_route_pattern(ngx_uint_t n);

/*
 * The toolkit of the resources (ngx_http_chathistory_api_query.c).
 */

/* run a statement for the request; the handler finalizes it */
ngx_int_t ngx_http_chathistory_api_query(ngx_http_request_t *r,
    ngx_uint_t stmt, const char **params, ngx_uint_t nparams,
    ngx_http_chathistory_pg_handler_pt handler);

/* answer a failed query (NULL result or an error) with the fitting status */
ngx_int_t ngx_http_chathistory_api_query_failed(
    ngx_http_chathistory_pg_query_t *q, PGresult *res);

/* refuse the request: the status is returned, the JSON error sent later */
ngx_int_t ngx_http_chathistory_api_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *message);

/* ?cursor= and ?limit= as statement parameters */
ngx_int_t ngx_http_chathistory_api_page_args(ngx_http_request_t *r,
    const char **micros, const char **id, const char **limit);

/* a page of a list from rows of (json, micros, id) */
ngx_int_t ngx_http_chathistory_api_page(ngx_http_request_t *r, PGresult *res,
    const char *limit_plus_one);

/* the URL prefix of this location's sessions, NUL-terminated */
ngx_int_t ngx_http_chathistory_api_sessions_url(ngx_http_request_t *r,
    ngx_str_t *url);

/* NGX_OK when the statement found its one thing; else NGX_DONE, answered */
ngx_int_t ngx_http_chathistory_api_found(ngx_http_chathistory_pg_query_t *q,
    PGresult *res, const char *missing, ngx_int_t *rc);

/* the organization named (or NULL), checked against an API key's */
ngx_int_t ngx_http_chathistory_api_org(ngx_http_request_t *r,
    const char *named, const char **org);

/* org_id of the body (or of the query when body is NULL), checked so */
ngx_int_t ngx_http_chathistory_api_org_named(ngx_http_request_t *r,
    cJSON *body, const char **org);

/* a UUID member of the body, or query argument, "name"; NULL when absent */
ngx_int_t ngx_http_chathistory_api_uuid(ngx_http_request_t *r, cJSON *item,
    ngx_str_t *arg, const char *name, const char **id);

/* user_id and metadata of the body (or of the query when arg is set) */
ngx_int_t ngx_http_chathistory_api_user_id(ngx_http_request_t *r,
    cJSON *item, ngx_str_t *arg, const char **user_id);
ngx_int_t ngx_http_chathistory_api_metadata(ngx_http_request_t *r,
    cJSON *item, ngx_str_t *arg, const char **metadata);

/* the ETag of a representation from its digest; the tags of If-Match
 * or If-None-Match (NULL for "*") and whether a digest is among them */
ngx_int_t ngx_http_chathistory_api_etag(ngx_http_request_t *r,
    const char *digest);
ngx_int_t ngx_http_chathistory_api_etags(ngx_http_request_t *r,
    ngx_table_elt_t *h, ngx_uint_t weak, const char **tags);
ngx_uint_t ngx_http_chathistory_api_etag_in(const char *tags,
    const char *digest);

/* answer with a statement's one JSON row, 404 with "missing" if none */
void ngx_http_chathistory_api_answer_row(ngx_http_chathistory_pg_query_t *q,
    PGresult *res, ngx_uint_t status, const char *missing);

/* an object body's members must all be among the given names */
const char *ngx_http_chathistory_api_unknown_member(cJSON *body,
    const char **names);

/* handlers of the resources */
ngx_int_t ngx_http_chathistory_session_create(ngx_http_request_t *r);
ngx_int_t ngx_http_chathistory_session_list(ngx_http_request_t *r);
ngx_int_t ngx_http_chathistory_session_get(ngx_http_request_t *r);
ngx_int_t ngx_http_chathistory_session_update(ngx_http_request_t *r);
ngx_int_t ngx_http_chathistory_session_delete(ngx_http_request_t *r);
ngx_int_t ngx_http_chathistory_message_list(ngx_http_request_t *r);
ngx_int_t ngx_http_chathistory_message_audio(ngx_http_request_t *r);
ngx_int_t ngx_http_chathistory_search(ngx_http_request_t *r);
ngx_int_t ngx_http_chathistory_retention_get(ngx_http_request_t *r);
ngx_int_t ngx_http_chathistory_retention_set(ngx_http_request_t *r);
ngx_int_t ngx_http_chathistory_health(ngx_http_request_t *r);


#endif /* _NGX_HTTP_CHATHISTORY_API_H_INCLUDED_ */
