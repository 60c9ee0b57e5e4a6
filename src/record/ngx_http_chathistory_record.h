
/*
 * A message recorded from the pipeline, from the moment its answer has
 * gone to the client until it is in the database or in the spool.
 */


#ifndef _NGX_HTTP_CHATHISTORY_RECORD_H_INCLUDED_
#define _NGX_HTTP_CHATHISTORY_RECORD_H_INCLUDED_


#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <cjson/cJSON.h>

#include "ngx_http_chathistory_module.h"
#include "ngx_http_chathistory_counters.h"
#include "ngx_http_chathistory_uuid.h"


#define NGX_HTTP_CHATHISTORY_RECORD_FIELDS  11


typedef struct ngx_http_chathistory_record_s  ngx_http_chathistory_record_t;


/* what a service of the record's life reports of it, once */
typedef enum {
    CH_RECORD_ENCODED = 0,   /* its audio is stored, or was skipped */
    CH_RECORD_REPLAYED,      /* read back from the spool */
    CH_RECORD_STORED,        /* in the database */
    CH_RECORD_ALONE,         /* its batch failed: to be written alone */
    CH_RECORD_GONE,          /* its session does not exist (in its scope) */
    CH_RECORD_AWAY           /* the database is away or far behind */
} ngx_http_chathistory_record_outcome_e;


typedef void (*ngx_http_chathistory_record_report_pt)(
    ngx_http_chathistory_record_t *rec,
    ngx_http_chathistory_record_outcome_e outcome);

struct ngx_http_chathistory_record_s {
    ngx_pool_t                         *pool;
    ngx_log_t                          *log;
    ngx_http_chathistory_main_conf_t   *conf;

    /* where a service reports what became of it: the record's owner */
    ngx_http_chathistory_record_report_pt  report;

    ngx_http_chathistory_uuid_t         id;
    ngx_http_chathistory_uuid_t         session_id;

    /* the organization the session must belong to (an API key's), or "" */
    ngx_http_chathistory_uuid_t         org_id;

    /* the statement's parameters, in its order; NULL is SQL NULL */
    const char                *values[NGX_HTTP_CHATHISTORY_RECORD_FIELDS];

    /* the request's audio: bytes in memory, or a part of a file */
    ngx_str_t                           audio_type;
    u_char                             *audio;
    size_t                              audio_len;
    ngx_fd_t                            audio_fd;
    off_t                               audio_offset;
    size_t                              audio_max;
    ngx_str_t                           storage;

    /* a spooled record being replayed: its claimed file */
    ngx_str_t                           spool_file;

    char                                reason[128];
};


/* indexes into values[] */
#define CH_REC_ID             0
#define CH_REC_SESSION        1
#define CH_REC_SOURCE_TEXT    2
#define CH_REC_TRANSLATED     3
#define CH_REC_STT_MS         4
#define CH_REC_TRANSLATE_MS   5
#define CH_REC_TTS_MS         6
#define CH_REC_MODEL          7
#define CH_REC_AUDIO_PATH     8
#define CH_REC_AUDIO_MS       9
#define CH_REC_ORG           10


/* the record as data (ngx_http_chathistory_record_data.c) */
ngx_http_chathistory_record_t *ngx_http_chathistory_record_create(
    ngx_http_chathistory_main_conf_t *cmcf);
ngx_int_t ngx_http_chathistory_record_fields(
    ngx_http_chathistory_record_t *rec, cJSON *json);
ngx_int_t ngx_http_chathistory_record_audio_fields(
    ngx_http_chathistory_record_t *rec, cJSON *json);
cJSON *ngx_http_chathistory_record_json(ngx_http_chathistory_record_t *rec);
void ngx_http_chathistory_record_free(ngx_http_chathistory_record_t *rec);

/* its life (ngx_http_chathistory_record.c) */
ngx_int_t ngx_http_chathistory_record_init(ngx_cycle_t *cycle,
    ngx_http_chathistory_main_conf_t *cmcf);
void ngx_http_chathistory_record_start(ngx_http_chathistory_record_t *rec);
void ngx_http_chathistory_record_exit(void);


#endif /* _NGX_HTTP_CHATHISTORY_RECORD_H_INCLUDED_ */
