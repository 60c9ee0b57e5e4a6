
/*
 * The batch writer: records written together, a statement at a time;
 * each reported stored, gone, alone or away.
 */


#ifndef _NGX_HTTP_CHATHISTORY_BATCH_H_INCLUDED_
#define _NGX_HTTP_CHATHISTORY_BATCH_H_INCLUDED_


#include "ngx_http_chathistory_record.h"


void ngx_http_chathistory_batch_add(ngx_http_chathistory_record_t *rec);
void ngx_http_chathistory_batch_exit(void);


#endif /* _NGX_HTTP_CHATHISTORY_BATCH_H_INCLUDED_ */
