
/*
 * The audio service: a record's input audio encoded to Ogg Opus in the
 * thread pool and stored (each reported encoded).
 */


#ifndef _NGX_HTTP_CHATHISTORY_AUDIO_H_INCLUDED_
#define _NGX_HTTP_CHATHISTORY_AUDIO_H_INCLUDED_


#include "ngx_http_chathistory_record.h"


void ngx_http_chathistory_audio_store(ngx_http_chathistory_record_t *rec);
void ngx_http_chathistory_audio_discard(ngx_http_chathistory_record_t *rec);


#endif /* _NGX_HTTP_CHATHISTORY_AUDIO_H_INCLUDED_ */
