
/*
 * Query embeddings: the built-in "hash" model in process, Ollama and
 * OpenAI-compatible servers through an in-memory subrequest to an internal
 * location that proxies to them.
 */


#ifndef _NGX_HTTP_CHATHISTORY_EMBED_H_INCLUDED_
#define _NGX_HTTP_CHATHISTORY_EMBED_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_chathistory_module.h"


/* the query's vector as pgvector text, "[x,y,...]", and its model's name */
typedef ngx_int_t (*ngx_http_chathistory_embed_pt)(ngx_http_request_t *r,
    void *data, const char *vector, const char *model);


/*
 * Embed a query and hand the vector to the handler: at once with the hash
 * model (its result is returned), or once a subrequest has brought it
 * (NGX_DONE is returned; the request is finalized with the handler's result,
 * or with 503 when the embedding server fails).
 */
ngx_int_t ngx_http_chathistory_embed_query(ngx_http_request_t *r,
    const char *query, ngx_http_chathistory_embed_pt handler, void *data);

/* check the embedding directives of an API location */
ngx_int_t ngx_http_chathistory_embed_check(ngx_conf_t *cf,
    ngx_http_chathistory_loc_conf_t *conf);


extern ngx_module_t  ngx_http_chathistory_embed_module;


#endif /* _NGX_HTTP_CHATHISTORY_EMBED_H_INCLUDED_ */
