
/*
 * The spool: records kept on disk while the database is away, replayed by
 * every worker process (each reported replayed to the handler given).
 */


#ifndef _NGX_HTTP_CHATHISTORY_SPOOL_H_INCLUDED_
#define _NGX_HTTP_CHATHISTORY_SPOOL_H_INCLUDED_


#include "ngx_http_chathistory_record.h"


ngx_int_t ngx_http_chathistory_spool_init(ngx_cycle_t *cycle,
    ngx_http_chathistory_main_conf_t *cmcf,
    ngx_http_chathistory_record_report_pt replayed);
void ngx_http_chathistory_spool_write(ngx_http_chathistory_record_t *rec);
void ngx_http_chathistory_spool_exit(void);
void ngx_http_chathistory_spool_move(ngx_http_chathistory_record_t *rec,
    const char *from, const char *to);

/* the record's life is over: its spool file (if any) goes, and it */
void ngx_http_chathistory_spool_done(ngx_http_chathistory_record_t *rec,
    ngx_uint_t stored);


#endif /* _NGX_HTTP_CHATHISTORY_SPOOL_H_INCLUDED_ */
