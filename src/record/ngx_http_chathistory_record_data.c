
/*
 * A recorded message as data: made from the upstream's answer or a spool
 * file, turned into the JSON a batch and the spool carry, freed.
 */


#include "ngx_http_chathistory_record.h"
#include "ngx_http_chathistory_validate.h"


/* a record and its texts, mostly: more comes in blocks of the same size */
#define CH_RECORD_POOL_SIZE   1024


static void ngx_http_chathistory_record_cleanup(void *data);
static const char *ngx_http_chathistory_record_text(
    ngx_http_chathistory_record_t *rec, cJSON *json, const char *name,
    const char *alias);
static const char *ngx_http_chathistory_record_ms(
    ngx_http_chathistory_record_t *rec, cJSON *json, const char *name);


ngx_http_chathistory_record_t *
ngx_http_chathistory_record_create(ngx_http_chathistory_main_conf_t *cmcf)
{
    ngx_pool_t                     *pool;
    ngx_pool_cleanup_t             *cln;
    ngx_http_chathistory_record_t  *rec;

    pool = ngx_create_pool(CH_RECORD_POOL_SIZE, ngx_cycle->log);
    if (pool == NULL) {
        return NULL;
    }

    rec = ngx_pcalloc(pool, sizeof(ngx_http_chathistory_record_t));
    cln = ngx_pool_cleanup_add(pool, 0);

    if (rec == NULL || cln == NULL) {
        ngx_destroy_pool(pool);
        return NULL;
    }

    rec->pool = pool;
    rec->log = ngx_cycle->log;
    rec->conf = cmcf;
    rec->audio_fd = NGX_INVALID_FILE;

    cln->handler = ngx_http_chathistory_record_cleanup;
    cln->data = rec;

    return rec;
}


static void
ngx_http_chathistory_record_cleanup(void *data)
{
    ngx_http_chathistory_record_t  *rec = data;

    if (rec->audio_fd != NGX_INVALID_FILE) {
        (void) ngx_close_file(rec->audio_fd);
    }
}


void
ngx_http_chathistory_record_free(ngx_http_chathistory_record_t *rec)
{
    ngx_destroy_pool(rec->pool);
}


/*
 * Take the texts, timings and model from the upstream's JSON answer (or a
 * spooled record, which uses the canonical names). The texts are needed;
 * timings and model are kept when they make sense.
 */
ngx_int_t
ngx_http_chathistory_record_fields(ngx_http_chathistory_record_t *rec,
    cJSON *json)
{
    cJSON  *timings;

    if (!cJSON_IsObject(json)) {
        ngx_cpystrn((u_char *) rec->reason, (u_char *) "not a JSON object",
                    sizeof(rec->reason));
        return NGX_DECLINED;
    }

    rec->values[CH_REC_ID] = (char *) rec->id.text;
    rec->values[CH_REC_SESSION] = (char *) rec->session_id.text;
    rec->values[CH_REC_ORG] = rec->org_id.text[0] ? (char *) rec->org_id.text
                                                  : NULL;

    rec->values[CH_REC_SOURCE_TEXT] = ngx_http_chathistory_record_text(rec,
                                        json, "transcript", "source_text");
    rec->values[CH_REC_TRANSLATED] = ngx_http_chathistory_record_text(rec,
                                        json, "translation", "translated_text");

    if (rec->values[CH_REC_SOURCE_TEXT] == NULL
        || rec->values[CH_REC_TRANSLATED] == NULL)
    {
        ngx_cpystrn((u_char *) rec->reason,
                    (u_char *) "no transcript or no translation in it",
                    sizeof(rec->reason));
        return NGX_DECLINED;
    }

    timings = cJSON_GetObjectItemCaseSensitive(json, "timings");
    if (!cJSON_IsObject(timings)) {
        timings = json;
    }

    rec->values[CH_REC_STT_MS] = ngx_http_chathistory_record_ms(rec, timings,
                                                                "stt_ms");
    rec->values[CH_REC_TRANSLATE_MS] = ngx_http_chathistory_record_ms(rec,
                                                     timings, "translate_ms");
    rec->values[CH_REC_TTS_MS] = ngx_http_chathistory_record_ms(rec, timings,
                                                                "tts_ms");
    rec->values[CH_REC_MODEL] = ngx_http_chathistory_record_text(rec, json,
                                                     "model_used", "model");

    return NGX_OK;
}


/* A string member by either name, valid UTF-8 of reasonable length. */
static const char *
ngx_http_chathistory_record_text(ngx_http_chathistory_record_t *rec,
    cJSON *json, const char *name, const char *alias)
{
    cJSON  *item;

    item = cJSON_GetObjectItemCaseSensitive(json, name);
    if (!cJSON_IsString(item)) {
        item = cJSON_GetObjectItemCaseSensitive(json, alias);
    }

    if (!cJSON_IsString(item)
        || ngx_http_chathistory_text_valid(item->valuestring, 1024 * 1024)
           != NGX_OK)
    {
        return NULL;
    }

    return ngx_http_chathistory_strdup(rec->pool, item->valuestring);
}


/* Milliseconds: a number from 0 to a day, rounded; anything else NULL. */
static const char *
ngx_http_chathistory_record_ms(ngx_http_chathistory_record_t *rec,
    cJSON *json, const char *name)
{
    u_char  *p;
    cJSON   *item;

    item = cJSON_GetObjectItemCaseSensitive(json, name);

    if (!cJSON_IsNumber(item) || !(item->valuedouble >= 0)
        || item->valuedouble > 86400000)
    {
        return NULL;
    }

    p = ngx_pnalloc(rec->pool, NGX_INT_T_LEN + 1);
    if (p == NULL) {
        return NULL;
    }

    *ngx_sprintf(p, "%ui", (ngx_uint_t) (item->valuedouble + 0.5)) = '\0';

    return (char *) p;
}


/* A spooled record's audio file, already stored, and its duration. */
ngx_int_t
ngx_http_chathistory_record_audio_fields(ngx_http_chathistory_record_t *rec,
    cJSON *json)
{
    cJSON  *path, *ms;

    path = cJSON_GetObjectItemCaseSensitive(json, "audio_path");
    ms = cJSON_GetObjectItemCaseSensitive(json, "audio_ms");

    if (path == NULL && ms == NULL) {
        return NGX_OK;
    }

    if (!cJSON_IsString(path) || !cJSON_IsString(ms)
        || ngx_atoi((u_char *) ms->valuestring, ngx_strlen(ms->valuestring))
           == NGX_ERROR
        || ngx_strlen(path->valuestring) != 2 * NGX_HTTP_CHATHISTORY_UUID_LEN
                                            + sizeof("/.opus") - 1
        || ngx_strncmp(path->valuestring, rec->session_id.text,
                       NGX_HTTP_CHATHISTORY_UUID_LEN) != 0
        || ngx_strncmp(path->valuestring + NGX_HTTP_CHATHISTORY_UUID_LEN + 1,
                       rec->id.text, NGX_HTTP_CHATHISTORY_UUID_LEN) != 0)
    {
        return NGX_DECLINED;
    }

    rec->values[CH_REC_AUDIO_PATH] = ngx_http_chathistory_strdup(rec->pool,
                                                     path->valuestring);
    rec->values[CH_REC_AUDIO_MS] = ngx_http_chathistory_strdup(rec->pool,
                                                     ms->valuestring);

    return (rec->values[CH_REC_AUDIO_PATH] && rec->values[CH_REC_AUDIO_MS])
           ? NGX_OK : NGX_ERROR;
}


/* The record as a JSON object with the canonical field names: a spool
 * file's content, and an element of a batch. */
cJSON *
ngx_http_chathistory_record_json(ngx_http_chathistory_record_t *rec)
{
    cJSON       *json;
    ngx_uint_t   i;

    static const char  *names[NGX_HTTP_CHATHISTORY_RECORD_FIELDS] = {
        "id", "session_id", "source_text", "translated_text", "stt_ms",
        "translate_ms", "tts_ms", "model_used", "audio_path", "audio_ms",
        "org_id"
    };

    json = cJSON_CreateObject();
    if (json == NULL) {
        return NULL;
    }

    for (i = 0; i < NGX_HTTP_CHATHISTORY_RECORD_FIELDS; i++) {
        if (rec->values[i] != NULL
            && cJSON_AddStringToObject(json, names[i], rec->values[i]) == NULL)
        {
            cJSON_Delete(json);
            return NULL;
        }
    }

    return json;
}
