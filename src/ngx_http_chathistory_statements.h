
/*
 * Every SQL statement the module runs: prepared once per connection.
 */


#ifndef _NGX_HTTP_CHATHISTORY_STATEMENTS_H_INCLUDED_
#define _NGX_HTTP_CHATHISTORY_STATEMENTS_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>


typedef enum {
    NGX_HTTP_CHATHISTORY_SQL_SESSION_CREATE = 0,
    NGX_HTTP_CHATHISTORY_SQL_SESSION_GET,
    NGX_HTTP_CHATHISTORY_SQL_SESSION_LIST,
    NGX_HTTP_CHATHISTORY_SQL_SESSION_UPDATE,
    NGX_HTTP_CHATHISTORY_SQL_SESSION_DELETE,
    NGX_HTTP_CHATHISTORY_SQL_MESSAGE_LIST_ASC,
    NGX_HTTP_CHATHISTORY_SQL_MESSAGE_LIST_DESC,
    NGX_HTTP_CHATHISTORY_SQL_MESSAGE_RECORD,
    NGX_HTTP_CHATHISTORY_SQL_SESSION_CAPTURE,
    NGX_HTTP_CHATHISTORY_SQL_MESSAGE_AUDIO,
    NGX_HTTP_CHATHISTORY_SQL_APIKEY_LOOKUP,
    NGX_HTTP_CHATHISTORY_SQL_APIKEY_TOUCH,
    NGX_HTTP_CHATHISTORY_SQL_COUNT
} ngx_http_chathistory_sql_e;


typedef struct {
    const char  *name;
    const char  *sql;
    int          nparams;
} ngx_http_chathistory_statement_t;


const ngx_http_chathistory_statement_t *ngx_http_chathistory_statement(
    ngx_uint_t id);


#endif /* _NGX_HTTP_CHATHISTORY_STATEMENTS_H_INCLUDED_ */
