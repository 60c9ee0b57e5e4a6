
/*
 * A message's stored audio, served by nginx's own file machinery: ranges,
 * conditional requests and sendfile come with it.
 */


#include "ngx_http_chathistory_api.h"
#include "ngx_http_chathistory_json.h"
#include "ngx_http_chathistory_statements.h"


static void ngx_http_chathistory_message_audio_found(
    ngx_http_chathistory_pg_query_t *q, PGresult *res);
static ngx_int_t ngx_http_chathistory_message_audio_send(
    ngx_http_request_t *r, const char *relative);
static ngx_int_t ngx_http_chathistory_message_audio_open(
    ngx_http_request_t *r, ngx_str_t *path, ngx_open_file_info_t *of);


static ngx_str_t  ngx_http_chathistory_opus_type =
    ngx_string("audio/ogg; codecs=opus");


ngx_int_t
ngx_http_chathistory_message_audio(ngx_http_request_t *r)
{
    const char                      *params[3];
    ngx_http_chathistory_api_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_chathistory_module);

    params[0] = (char *) ctx->message_id.text;
    params[1] = (char *) ctx->session_id.text;
    params[2] = ctx->scope_org;

    return ngx_http_chathistory_api_query(r,
                                 NGX_HTTP_CHATHISTORY_SQL_MESSAGE_AUDIO,
                                 params, 3,
                                 ngx_http_chathistory_message_audio_found);
}


static void
ngx_http_chathistory_message_audio_found(ngx_http_chathistory_pg_query_t *q,
    PGresult *res)
{
    ngx_int_t            rc;
    ngx_http_request_t  *r;

    r = q->request;

    if (res != NULL && PQresultStatus(res) == PGRES_TUPLES_OK
        && PQntuples(res) == 0)
    {
        rc = ngx_http_chathistory_send_error(r, NGX_HTTP_NOT_FOUND,
                                             "no such message");

    } else if (ngx_http_chathistory_api_found(q, res,
                                              "the message has no audio", &rc)
               == NGX_OK)
    {
        rc = ngx_http_chathistory_message_audio_send(r, PQgetvalue(res, 0, 0));
    }

    ngx_http_finalize_request(r, rc);
}


static ngx_int_t
ngx_http_chathistory_message_audio_send(ngx_http_request_t *r,
    const char *relative)
{
    u_char                           *p;
    ngx_int_t                         rc;
    ngx_str_t                         path;
    ngx_buf_t                        *b;
    ngx_chain_t                       out;
    ngx_open_file_info_t              of;
    ngx_http_chathistory_api_ctx_t   *ctx;
    ngx_http_chathistory_loc_conf_t  *clcf;

    ctx = ngx_http_get_module_ctx(r, ngx_http_chathistory_module);
    clcf = ngx_http_get_module_loc_conf(r, ngx_http_chathistory_module);

    /* the path is made of the ids the request was checked with, never of
     * what the database says */
    if (clcf->audio_storage_path.len == 0
        || ngx_strlen(relative) != 2 * NGX_HTTP_CHATHISTORY_UUID_LEN
                                   + sizeof("/.opus") - 1)
    {
        return ngx_http_chathistory_send_error(r, NGX_HTTP_NOT_FOUND,
                                               "the message has no audio");
    }

    path.len = clcf->audio_storage_path.len + 1
               + 2 * NGX_HTTP_CHATHISTORY_UUID_LEN + sizeof("/.opus") - 1;
    path.data = ngx_pnalloc(r->pool, path.len + 1);
    if (path.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_sprintf(path.data, "%V/%s/%s.opus", &clcf->audio_storage_path,
                    ctx->session_id.text, ctx->message_id.text);
    *p = '\0';

    rc = ngx_http_chathistory_message_audio_open(r, &path, &of);
    if (rc != NGX_OK) {
        return ngx_http_chathistory_send_error(r, rc,
                                          rc == NGX_HTTP_NOT_FOUND
                                          ? "the message has no audio"
                                          : "the audio cannot be read");
    }

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = of.size;
    r->headers_out.last_modified_time = of.mtime;
    r->headers_out.content_type = ngx_http_chathistory_opus_type;
    r->headers_out.content_type_len = ngx_http_chathistory_opus_type.len;
    r->allow_ranges = 1;

    if (ngx_http_set_etag(r) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->file = ngx_pcalloc(r->pool, sizeof(ngx_file_t));
    if (b->file == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b->file_pos = 0;
    b->file_last = of.size;
    b->in_file = b->file_last ? 1 : 0;
    b->last_buf = 1;
    b->last_in_chain = 1;

    b->file->fd = of.fd;
    b->file->name = path;
    b->file->log = r->connection->log;
    b->file->directio = of.is_directio;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


static ngx_int_t
ngx_http_chathistory_message_audio_open(ngx_http_request_t *r,
    ngx_str_t *path, ngx_open_file_info_t *of)
{
    ngx_http_core_loc_conf_t  *core;

    core = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    ngx_memzero(of, sizeof(ngx_open_file_info_t));

    of->read_ahead = core->read_ahead;
    of->directio = core->directio;
    of->valid = core->open_file_cache_valid;
    of->min_uses = core->open_file_cache_min_uses;
    of->errors = core->open_file_cache_errors;
    of->events = core->open_file_cache_events;

    if (ngx_open_cached_file(core->open_file_cache, path, of, r->pool)
        == NGX_OK && of->is_file)
    {
        return NGX_OK;
    }

    if (of->err != NGX_ENOENT && of->err != NGX_ENOTDIR && of->err != 0) {
        ngx_log_error(NGX_LOG_CRIT, r->connection->log, of->err,
                      "chathistory: %s \"%V\" failed", of->failed,
                      path);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the database knew it, the disk does not: removed behind our back */
    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "chathistory: audio file \"%V\" is missing", path);

    return NGX_HTTP_NOT_FOUND;
}
