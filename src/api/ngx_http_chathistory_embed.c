
/*
 * Query embeddings. The "hash" model runs in process. With "ollama" or
 * "openai" the query is POSTed as JSON to the internal location named by
 * chathistory_embedding_url, in a subrequest whose answer stays in memory;
 * the request waits for it without blocking the worker and resumes on its
 * write event handler once the vector is in.
 */


#include <math.h>

#include "ngx_http_chathistory_api.h"
#include "ngx_http_chathistory_embed.h"
#include "ngx_http_chathistory_json.h"
#include "chathistory_hash_embed.h"


#define CH_EMBED_DIM           CHATHISTORY_HASH_DIM
#define CH_EMBED_QUERY_PREFIX  "search_query: "


typedef struct {
    ngx_http_chathistory_embed_pt   handler;
    void                           *data;
    const char                     *model;
    ngx_uint_t                      openai;     /* the shape of the JSON */
    const char                     *vector;
    const char                     *error;      /* the 503's message */
    ngx_http_request_t             *sr;
    off_t                           received;
    unsigned                        done:1;
    unsigned                        too_big:1;
} ngx_http_chathistory_embed_ctx_t;


static ngx_int_t ngx_http_chathistory_embed_hash(ngx_http_request_t *r,
    const char *query, ngx_http_chathistory_embed_pt handler, void *data);
static ngx_buf_t *ngx_http_chathistory_embed_body(ngx_http_request_t *r,
    ngx_http_chathistory_embed_ctx_t *ectx, const char *query);
static ngx_int_t ngx_http_chathistory_embed_subrequest(ngx_http_request_t *r,
    ngx_http_chathistory_embed_ctx_t *ectx, ngx_buf_t *b);
static ngx_int_t ngx_http_chathistory_embed_headers(ngx_http_request_t *sr,
    size_t len);
static ngx_int_t ngx_http_chathistory_embed_done(ngx_http_request_t *sr,
    void *data, ngx_int_t rc);
static const char *ngx_http_chathistory_embed_answer(ngx_http_request_t *sr,
    ngx_http_chathistory_embed_ctx_t *ectx, ngx_int_t rc);
static const char *ngx_http_chathistory_embed_parse(ngx_http_request_t *sr,
    ngx_http_chathistory_embed_ctx_t *ectx, ngx_buf_t *b);
static cJSON *ngx_http_chathistory_embed_find(cJSON *json, ngx_uint_t openai);
static const char *ngx_http_chathistory_embed_vector(ngx_http_request_t *sr,
    ngx_http_chathistory_embed_ctx_t *ectx, cJSON *array);
static ngx_int_t ngx_http_chathistory_embed_body_filter(ngx_http_request_t *r,
    ngx_chain_t *in);
static void ngx_http_chathistory_embed_resume(ngx_http_request_t *r);
static char *ngx_http_chathistory_embed_text(ngx_pool_t *pool,
    const float *v);


static ngx_int_t ngx_http_chathistory_embed_init(ngx_conf_t *cf);


/* a module of its own for the query's embedding as a request's context */
static ngx_http_module_t  ngx_http_chathistory_embed_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_http_chathistory_embed_init,       /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    NULL,                                  /* create location configuration */
    NULL                                   /* merge location configuration */
};


ngx_module_t  ngx_http_chathistory_embed_module = {
    NGX_MODULE_V1,
    &ngx_http_chathistory_embed_module_ctx, /* module context */
    NULL,                                  /* module directives */
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


static ngx_http_output_body_filter_pt  ngx_http_next_body_filter;


ngx_int_t
ngx_http_chathistory_embed_query(ngx_http_request_t *r, const char *query,
    ngx_http_chathistory_embed_pt handler, void *data)
{
    ngx_buf_t                         *b;
    ngx_http_chathistory_loc_conf_t   *clcf;
    ngx_http_chathistory_embed_ctx_t  *ectx;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_chathistory_module);

    if (ngx_strcmp(clcf->embedding_provider.data, "hash") == 0) {
        return ngx_http_chathistory_embed_hash(r, query, handler, data);
    }

    ectx = ngx_pcalloc(r->pool, sizeof(ngx_http_chathistory_embed_ctx_t));
    if (ectx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ectx->handler = handler;
    ectx->data = data;
    ectx->model = (const char *) clcf->embedding_model.data;
    ectx->openai = ngx_strcmp(clcf->embedding_provider.data, "openai") == 0;

    b = ngx_http_chathistory_embed_body(r, ectx, query);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_http_chathistory_embed_subrequest(r, ectx, b) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_http_set_ctx(r, ectx, ngx_http_chathistory_embed_module);

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "chathistory embed subrequest \"%V\", model \"%s\"",
                   &clcf->embedding_url, ectx->model);

    return NGX_DONE;
}


static ngx_int_t
ngx_http_chathistory_embed_hash(ngx_http_request_t *r, const char *query,
    ngx_http_chathistory_embed_pt handler, void *data)
{
    char   *vector;
    float   v[CH_EMBED_DIM];

    (void) chathistory_hash_embed((const unsigned char *) query,
                                  ngx_strlen(query), v);

    vector = ngx_http_chathistory_embed_text(r->pool, v);
    if (vector == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return handler(r, data, vector, CHATHISTORY_HASH_MODEL);
}


/*
 * Ollama gets both request shapes in one object: "input" for /api/embed,
 * "prompt" for the older /api/embeddings, each ignoring the other's field.
 */
static ngx_buf_t *
ngx_http_chathistory_embed_body(ngx_http_request_t *r,
    ngx_http_chathistory_embed_ctx_t *ectx, const char *query)
{
    char       *json;
    u_char     *text, *p;
    size_t      len;
    cJSON      *body, *input;
    ngx_buf_t  *b;

    len = ngx_strlen(query);

    text = ngx_pnalloc(r->pool, sizeof(CH_EMBED_QUERY_PREFIX) + len);
    if (text == NULL) {
        return NULL;
    }

    p = text;

    /* nomic-embed-text was trained with task prefixes */
    if (ngx_strstr(ectx->model, "nomic") != NULL) {
        p = ngx_cpymem(p, CH_EMBED_QUERY_PREFIX,
                       sizeof(CH_EMBED_QUERY_PREFIX) - 1);
    }

    p = ngx_cpymem(p, query, len);
    *p = '\0';

    b = NULL;
    json = NULL;

    body = cJSON_CreateObject();
    input = cJSON_CreateArray();

    if (body == NULL || input == NULL
        || !cJSON_AddItemToObject(body, "input", input))
    {
        cJSON_Delete(input);
        goto failed;
    }

    if (cJSON_AddStringToObject(body, "model", ectx->model) == NULL
        || !cJSON_AddItemToArray(input, cJSON_CreateString((char *) text))
        || (ectx->openai
            ? cJSON_AddStringToObject(body, "encoding_format", "float")
            : cJSON_AddStringToObject(body, "prompt", (char *) text))
           == NULL)
    {
        goto failed;
    }

    json = cJSON_PrintUnformatted(body);
    if (json == NULL) {
        goto failed;
    }

    len = ngx_strlen(json);

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        goto failed;
    }

    b->last = ngx_cpymem(b->last, json, len);
    b->last_buf = 1;

failed:

    cJSON_free(json);
    cJSON_Delete(body);

    return b;
}


static ngx_int_t
ngx_http_chathistory_embed_subrequest(ngx_http_request_t *r,
    ngx_http_chathistory_embed_ctx_t *ectx, ngx_buf_t *b)
{
    ngx_chain_t                      *cl;
    ngx_http_request_t               *sr;
    ngx_http_request_body_t          *rb;
    ngx_http_post_subrequest_t       *ps;
    ngx_http_chathistory_loc_conf_t  *clcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_chathistory_module);

    ps = ngx_palloc(r->pool, sizeof(ngx_http_post_subrequest_t));
    rb = ngx_pcalloc(r->pool, sizeof(ngx_http_request_body_t));
    cl = ngx_alloc_chain_link(r->pool);

    if (ps == NULL || rb == NULL || cl == NULL) {
        return NGX_ERROR;
    }

    ps->handler = ngx_http_chathistory_embed_done;
    ps->data = ectx;

    if (ngx_http_subrequest(r, &clcf->embedding_url, NULL, &sr, ps,
                            NGX_HTTP_SUBREQUEST_IN_MEMORY
                            |NGX_HTTP_SUBREQUEST_WAITED)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ectx->sr = sr;

    /*
     * a subrequest shares its parent's body, here the client's JSON,
     * already read: give it its own, which proxy_pass sends instead
     */
    cl->buf = b;
    cl->next = NULL;

    rb->bufs = cl;
    rb->buf = b;

    sr->request_body = rb;
    sr->method = NGX_HTTP_POST;
    ngx_str_set(&sr->method_name, "POST");

    return ngx_http_chathistory_embed_headers(sr, b->last - b->pos);
}


/*
 * The subrequest's headers are its own too: nothing of the client's, such
 * as the API key in its Authorization, reaches the embedding server.
 */
static ngx_int_t
ngx_http_chathistory_embed_headers(ngx_http_request_t *sr, size_t len)
{
    ngx_table_elt_t  *h;

    ngx_memzero(&sr->headers_in, sizeof(ngx_http_headers_in_t));

    if (ngx_list_init(&sr->headers_in.headers, sr->pool, 2,
                      sizeof(ngx_table_elt_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    h = ngx_list_push(&sr->headers_in.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    ngx_str_set(&h->key, "Content-Type");
    ngx_str_set(&h->value, "application/json");
    h->lowcase_key = (u_char *) "content-type";
    h->hash = ngx_hash_key(h->lowcase_key, h->key.len);

    sr->headers_in.content_type = h;
    sr->headers_in.content_length_n = len;
    sr->headers_in.keep_alive_n = -1;

    return NGX_OK;
}


/*
 * The subrequest is done: keep the vector or the reason it failed, and
 * have the parent resumed. nginx may call this twice (after an error page
 * of the subrequest's own); only the first call counts. A failure is
 * answered as NGX_OK, or nginx would end the client's request with it.
 */
static ngx_int_t
ngx_http_chathistory_embed_done(ngx_http_request_t *sr, void *data,
    ngx_int_t rc)
{
    ngx_http_chathistory_embed_ctx_t  *ectx = data;

    if (rc == NGX_DONE || rc == NGX_HTTP_CLIENT_CLOSED_REQUEST
        || rc == NGX_HTTP_REQUEST_TIME_OUT || sr->connection->error)
    {
        /* the client's request is going away */
        return rc;
    }

    if (!ectx->done) {
        ectx->done = 1;
        ectx->error = ngx_http_chathistory_embed_answer(sr, ectx, rc);
        sr->parent->write_event_handler = ngx_http_chathistory_embed_resume;
    }

    if (rc == NGX_ERROR || rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return NGX_OK;
    }

    return rc;
}


/* NULL with the vector in ectx, or the message of the 503 */
static const char *
ngx_http_chathistory_embed_answer(ngx_http_request_t *sr,
    ngx_http_chathistory_embed_ctx_t *ectx, ngx_int_t rc)
{
    ngx_uint_t  status;

    status = sr->headers_out.status;

    if (ectx->too_big) {
        ngx_log_error(NGX_LOG_ERR, sr->connection->log, 0,
                      "chathistory: the embedding server \"%V\" sent an "
                      "answer larger than subrequest_output_buffer_size",
                      &sr->uri);
        return "the embedding server's answer is larger than "
               "subrequest_output_buffer_size";
    }

    if (rc == NGX_HTTP_GATEWAY_TIME_OUT || status == NGX_HTTP_GATEWAY_TIME_OUT)
    {
        ngx_log_error(NGX_LOG_ERR, sr->connection->log, 0,
                      "chathistory: the embedding server \"%V\" timed out",
                      &sr->uri);
        return "the embedding server did not answer in time";
    }

    if (rc == NGX_ERROR || rc >= NGX_HTTP_SPECIAL_RESPONSE || status == 0) {
        ngx_log_error(NGX_LOG_ERR, sr->connection->log, 0,
                      "chathistory: the embedding server \"%V\" is "
                      "unreachable (%i)", &sr->uri, rc);
        return "the embedding server is unreachable";
    }

    if (status >= NGX_HTTP_INTERNAL_SERVER_ERROR) {
        ngx_log_error(NGX_LOG_ERR, sr->connection->log, 0,
                      "chathistory: the embedding server \"%V\" failed "
                      "with status %ui", &sr->uri, status);
        return "the embedding server failed to embed the query";
    }

    if (status != NGX_HTTP_OK) {
        ngx_log_error(NGX_LOG_ERR, sr->connection->log, 0,
                      "chathistory: the embedding server \"%V\" refused "
                      "the query with status %ui", &sr->uri, status);
        return "the embedding server refused the query";
    }

    if (sr->out == NULL || sr->out->buf == NULL) {
        ngx_log_error(NGX_LOG_ERR, sr->connection->log, 0,
                      "chathistory: the embedding server \"%V\" sent "
                      "an empty answer", &sr->uri);
        return "the embedding server sent no embedding";
    }

    return ngx_http_chathistory_embed_parse(sr, ectx, sr->out->buf);
}


static const char *
ngx_http_chathistory_embed_parse(ngx_http_request_t *sr,
    ngx_http_chathistory_embed_ctx_t *ectx, ngx_buf_t *b)
{
    cJSON       *json, *array;
    const char  *error;

    json = cJSON_ParseWithLength((const char *) b->pos, b->last - b->pos);

    array = ngx_http_chathistory_embed_find(json, ectx->openai);

    if (array == NULL) {
        ngx_log_error(NGX_LOG_ERR, sr->connection->log, 0,
                      "chathistory: the embedding server \"%V\" sent "
                      "no embedding in \"%*s\"", &sr->uri,
                      (size_t) ngx_min(b->last - b->pos, 200), b->pos);
        error = "the embedding server sent no embedding";
        goto failed;
    }

    error = ngx_http_chathistory_embed_vector(sr, ectx, array);

failed:

    cJSON_Delete(json);

    return error;
}


/*
 * Ollama: {"embeddings": [[...]]} from /api/embed, {"embedding": [...]}
 * from /api/embeddings; OpenAI: {"data": [{"index": 0, "embedding": [...]}]}.
 */
static cJSON *
ngx_http_chathistory_embed_find(cJSON *json, ngx_uint_t openai)
{
    cJSON  *item, *array;

    if (!cJSON_IsObject(json)) {
        return NULL;
    }

    if (openai) {
        item = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(json,
                                                                   "data"),
                                  0);
        array = cJSON_GetObjectItemCaseSensitive(item, "embedding");

    } else {
        array = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(json,
                                                               "embeddings"),
                                   0);
        if (array == NULL) {
            array = cJSON_GetObjectItemCaseSensitive(json, "embedding");
        }
    }

    return cJSON_IsArray(array) ? array : NULL;
}


/* 768 numbers, L2-normalised as the worker stores them */
static const char *
ngx_http_chathistory_embed_vector(ngx_http_request_t *sr,
    ngx_http_chathistory_embed_ctx_t *ectx, cJSON *array)
{
    int         n;
    float       v[CH_EMBED_DIM];
    cJSON      *item;
    double      norm;
    ngx_uint_t  i;

    n = cJSON_GetArraySize(array);

    if (n != CH_EMBED_DIM) {
        ngx_log_error(NGX_LOG_ERR, sr->connection->log, 0,
                      "chathistory: the embedding model \"%s\" gave "
                      "%d dimensions, not %d", ectx->model, n, CH_EMBED_DIM);
        return "the embedding model gives vectors of another dimension "
               "than the stored messages (768)";
    }

    i = 0;
    norm = 0.0;

    cJSON_ArrayForEach(item, array) {
        if (!cJSON_IsNumber(item)) {
            break;
        }

        v[i++] = (float) item->valuedouble;
        norm += item->valuedouble * item->valuedouble;
    }

    norm = sqrt(norm);

    if (i != CH_EMBED_DIM || !(norm > 0.0) || !isfinite(norm)) {
        ngx_log_error(NGX_LOG_ERR, sr->connection->log, 0,
                      "chathistory: the embedding server \"%V\" sent "
                      "an embedding that is not a vector of numbers",
                      &sr->uri);
        return "the embedding server sent no embedding";
    }

    for (i = 0; i < CH_EMBED_DIM; i++) {
        v[i] = (float) (v[i] / norm);
    }

    ectx->vector = ngx_http_chathistory_embed_text(sr->pool, v);
    if (ectx->vector == NULL) {
        return "the embedding could not be kept";
    }

    return NULL;
}


/* The parent's turn again: on with the vector, or 503. */
/*
 * An answer that does not fit the subrequest's buffer would make nginx
 * end the client's connection with no answer at all: past the bound, the
 * rest is dropped here, before the buffer, and the request gets its 503.
 */
static ngx_int_t
ngx_http_chathistory_embed_body_filter(ngx_http_request_t *r, ngx_chain_t *in)
{
    off_t                              size;
    ngx_chain_t                       *cl;
    ngx_http_core_loc_conf_t          *core;
    ngx_http_chathistory_embed_ctx_t  *ectx;

    ectx = (r != r->main)
           ? ngx_http_get_module_ctx(r->parent,
                                     ngx_http_chathistory_embed_module)
           : NULL;

    if (ectx == NULL || ectx->sr != r) {
        return ngx_http_next_body_filter(r, in);
    }

    core = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    size = 0;
    for (cl = in; cl; cl = cl->next) {
        size += ngx_buf_size(cl->buf);
    }

    if (r->headers_out.content_length_n
        > (off_t) core->subrequest_output_buffer_size
        || ectx->received + size > (off_t) core->subrequest_output_buffer_size)
    {
        ectx->too_big = 1;
    }

    if (!ectx->too_big) {
        ectx->received += size;
        return ngx_http_next_body_filter(r, in);
    }

    for (cl = in; cl; cl = cl->next) {
        cl->buf->pos = cl->buf->last;
        cl->buf->file_pos = cl->buf->file_last;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_http_chathistory_embed_init(ngx_conf_t *cf)
{
    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_chathistory_embed_body_filter;

    return NGX_OK;
}


static void
ngx_http_chathistory_embed_resume(ngx_http_request_t *r)
{
    ngx_int_t                          rc;
    ngx_http_chathistory_api_ctx_t    *ctx;
    ngx_http_chathistory_embed_ctx_t  *ectx;

    r->write_event_handler = ngx_http_request_empty_handler;

    ctx = ngx_http_get_module_ctx(r, ngx_http_chathistory_module);
    ectx = ngx_http_get_module_ctx(r, ngx_http_chathistory_embed_module);

    if (ectx->error != NULL) {
        ngx_http_finalize_request(r,
                      ngx_http_chathistory_send_error(r,
                                                  NGX_HTTP_SERVICE_UNAVAILABLE,
                                                  ectx->error));
        return;
    }

    rc = ectx->handler(r, ectx->data, ectx->vector, ectx->model);

    if (rc == NGX_DONE) {
        return;
    }

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE && ctx->error != NULL) {
        rc = ngx_http_chathistory_send_error(r, rc, ctx->error);
    }

    ngx_http_finalize_request(r, rc);
}


/* pgvector's text form, "[x,y,...]" */
static char *
ngx_http_chathistory_embed_text(ngx_pool_t *pool, const float *v)
{
    char        *text, *p;
    size_t       size;
    ngx_uint_t   i;

    size = CH_EMBED_DIM * 16 + 3;

    text = ngx_pnalloc(pool, size);
    if (text == NULL) {
        return NULL;
    }

    p = text;
    *p++ = '[';

    for (i = 0; i < CH_EMBED_DIM; i++) {
        p += snprintf(p, text + size - p, i ? ",%.7g" : "%.7g", (double) v[i]);
    }

    *p++ = ']';
    *p = '\0';

    return text;
}


ngx_int_t
ngx_http_chathistory_embed_check(ngx_conf_t *cf,
    ngx_http_chathistory_loc_conf_t *conf)
{
    ngx_str_t  *provider, *url;

    provider = &conf->embedding_provider;
    url = &conf->embedding_url;

    if (ngx_strcmp(provider->data, "hash") == 0) {
        return NGX_OK;
    }

    if (ngx_strcmp(provider->data, "ollama") != 0
        && ngx_strcmp(provider->data, "openai") != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid chathistory_embedding_provider \"%V\", "
                           "it must be hash, ollama or openai", provider);
        return NGX_ERROR;
    }

    if (conf->embedding_model.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "chathistory_embedding_provider \"%V\" requires "
                           "chathistory_embedding_model", provider);
        return NGX_ERROR;
    }

    if (url->len == 0 || url->data[0] != '/'
        || ngx_strlchr(url->data, url->data + url->len, '?') != NULL)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "chathistory_embedding_provider \"%V\" requires "
                           "chathistory_embedding_url to be the URI of an "
                           "internal location that proxies to the embedding "
                           "server, such as \"/_embed\", not \"%V\"",
                           provider, url);
        return NGX_ERROR;
    }

    return NGX_OK;
}
