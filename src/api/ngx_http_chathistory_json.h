
/*
 * JSON in and out: request bodies parsed with cJSON tied to the request
 * pool, responses and the API's error format.
 */


#ifndef _NGX_HTTP_CHATHISTORY_JSON_H_INCLUDED_
#define _NGX_HTTP_CHATHISTORY_JSON_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <cjson/cJSON.h>


/* what ngx_http_chathistory_json_strings_check() finds */
extern const char  ngx_http_chathistory_json_nul[];
extern const char  ngx_http_chathistory_json_control[];


cJSON *ngx_http_chathistory_json_parse(ngx_http_request_t *r, ngx_str_t *text);
const char *ngx_http_chathistory_json_strings_check(ngx_str_t *text,
    ngx_str_t *member);
ngx_int_t ngx_http_chathistory_json_string(ngx_http_request_t *r,
    ngx_str_t *out, const char *s);

ngx_int_t ngx_http_chathistory_send_json(ngx_http_request_t *r,
    ngx_uint_t status, ngx_chain_t *body);
ngx_int_t ngx_http_chathistory_send_text(ngx_http_request_t *r,
    ngx_uint_t status, const char *text, size_t len);
ngx_int_t ngx_http_chathistory_send_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *message);
ngx_int_t ngx_http_chathistory_send_no_content(ngx_http_request_t *r);
ngx_int_t ngx_http_chathistory_send_not_modified(ngx_http_request_t *r);

/* nginx's $request_id of the request */
ngx_int_t ngx_http_chathistory_request_id(ngx_http_request_t *r,
    ngx_str_t *id);


#endif /* _NGX_HTTP_CHATHISTORY_JSON_H_INCLUDED_ */
