
/*
 * Fuzz target: the message fields taken from the pipeline's JSON answer
 * (the capture filter) or from a spooled record (its replay).  What is
 * taken becomes statement parameters: UTF-8 texts and whole milliseconds.
 */


#include "harness.h"
#include "ngx_http_chathistory_record.h"


static ngx_http_chathistory_main_conf_t  fuzz_main_conf;


int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    harness_init();
    return 0;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char                           *copy;
    cJSON                          *json;
    ngx_int_t                       rc;
    ngx_uint_t                      i;
    const char                     *v;
    ngx_http_chathistory_record_t  *rec;

    /* an exact copy: cJSON must not read past the captured bytes */
    copy = malloc(size + 1);
    harness_check(copy != NULL);
    ngx_memcpy(copy, data, size);

    json = cJSON_ParseWithLength(copy, size);
    if (json == NULL) {
        free(copy);
        return 0;
    }

    rec = ngx_http_chathistory_record_create(&fuzz_main_conf);
    harness_check(rec != NULL);

    ngx_http_chathistory_uuid_v7(&rec->id);
    ngx_http_chathistory_uuid_v7(&rec->session_id);

    rc = ngx_http_chathistory_record_fields(rec, json);

    if (rc == NGX_OK) {
        harness_check(rec->values[CH_REC_SOURCE_TEXT] != NULL);
        harness_check(rec->values[CH_REC_TRANSLATED] != NULL);

        rc = ngx_http_chathistory_record_audio_fields(rec, json);
        harness_check(rc == NGX_OK || rc == NGX_DECLINED);

        for (i = 0; i < NGX_HTTP_CHATHISTORY_RECORD_FIELDS; i++) {
            v = rec->values[i];

            if (v != NULL) {
                harness_check(harness_utf8((u_char *) v, ngx_strlen(v))
                              == NGX_OK);
            }
        }

        for (i = CH_REC_STT_MS; i <= CH_REC_TTS_MS; i++) {
            v = rec->values[i];

            if (v != NULL) {
                harness_check(ngx_atoi((u_char *) v, ngx_strlen(v))
                              <= 86400000);
            }
        }

    } else {
        harness_check(rc == NGX_DECLINED && rec->reason[0] != '\0');
    }

    ngx_http_chathistory_record_free(rec);
    cJSON_Delete(json);
    free(copy);

    return 0;
}
