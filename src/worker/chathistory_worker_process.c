
/*
 * Doing a batch of claimed jobs: embed_message jobs together, as one
 * embedding request, then delete_audio jobs one by one.
 */


#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "chathistory_worker.h"


typedef struct {
    chw_job_t    *job;
    char          message_id[CHW_UUID_LEN + 1];
    const char   *text;
    int           row;        /* in the messages result, -1: gone */
} chw_embed_item_t;


static void chw_process_embed(PGconn *conn, chw_config_t *cf,
    chw_embedder_t *e, chw_job_t *jobs, int n);
static int chw_process_payload(chw_job_t *job, const char *key, char *id);
static int chw_process_collect(chw_job_t *jobs, int n,
    chw_embed_item_t *items);
static PGresult *chw_process_messages(PGconn *conn, chw_embed_item_t *items,
    int n);
static int chw_process_texts(PGresult *res, chw_embed_item_t *items, int n,
    const char **texts);
static int chw_process_store(PGconn *conn, chw_embedder_t *e,
    chw_embed_item_t *item, const float *vec);
static void chw_process_delete_audio(chw_config_t *cf, chw_job_t *job);
static void chw_process_fail_all(chw_embed_item_t *items, int n, int rc,
    const char *err);


static const char  chw_process_messages_sql[] =
    "SELECT id, concat_ws(E'\\n', nullif(source_text, ''), "
    "nullif(translated_text, '')) FROM messages WHERE id = ANY($1::uuid[])";

static const char  chw_process_store_sql[] =
    "UPDATE messages SET embedding = $2::vector, embedding_model = $3 "
    "WHERE id = $1";


void
chw_process_batch(PGconn *conn, chw_config_t *cf, chw_embedder_t *e,
    chw_job_t *jobs, int n)
{
    int  i;

    chw_process_embed(conn, cf, e, jobs, n);

    for (i = 0; i < n; i++) {
        if (strcmp(jobs[i].kind, "delete_audio") == 0) {
            chw_process_delete_audio(cf, &jobs[i]);

        } else if (strcmp(jobs[i].kind, "embed_message") != 0) {
            snprintf(jobs[i].error, sizeof(jobs[i].error),
                     "unknown job kind \"%.64s\"", jobs[i].kind);
        }
    }
}


static void
chw_process_embed(PGconn *conn, chw_config_t *cf, chw_embedder_t *e,
    chw_job_t *jobs, int n)
{
    int                i, m, t, dim, rc;
    char               err[256];
    float             *vecs;
    PGresult          *res;
    const char       **texts;
    chw_embed_item_t  *items;

    m = 0;
    items = calloc(n, sizeof(chw_embed_item_t));
    texts = calloc(n, sizeof(char *));
    vecs = NULL;
    res = NULL;

    if (items == NULL || texts == NULL) {
        goto failed;
    }

    m = chw_process_collect(jobs, n, items);
    if (m == 0) {
        goto done;
    }

    res = chw_process_messages(conn, items, m);
    if (res == NULL) {
        chw_process_fail_all(items, m, CHW_ERROR, "cannot read the messages");
        goto done;
    }

    t = chw_process_texts(res, items, m, texts);
    dim = chw_embed_dim(e);

    vecs = malloc((size_t) (t ? t : 1) * dim * sizeof(float));
    if (vecs == NULL) {
        goto failed;
    }

    rc = t ? chw_embed_documents(e, texts, t, vecs, err, sizeof(err))
           : CHW_OK;

    if (rc != CHW_OK) {
        chw_process_fail_all(items, m, rc, err);
        goto done;
    }

    for (i = 0, t = 0; i < m; i++) {
        if (items[i].row < 0) {
            items[i].job->rc = CHW_OK;
            continue;
        }

        items[i].job->rc = chw_process_store(conn, e, &items[i],
                                             vecs + (size_t) t++ * dim);
    }

    goto done;

failed:

    chw_log(CHW_LOG_ERROR, "out of memory", NULL);

    if (items != NULL) {
        chw_process_fail_all(items, m, CHW_ERROR, "out of memory");
    }

done:

    PQclear(res);
    free(vecs);
    free(texts);
    free(items);
}


/* the embed_message jobs and their message ids; a bad payload fails here */
static int
chw_process_collect(chw_job_t *jobs, int n, chw_embed_item_t *items)
{
    int  i, m;

    for (i = 0, m = 0; i < n; i++) {
        if (strcmp(jobs[i].kind, "embed_message") != 0) {
            continue;
        }

        if (chw_process_payload(&jobs[i], "message_id",
                                items[m].message_id) != CHW_OK)
        {
            continue;
        }

        items[m++].job = &jobs[i];
    }

    return m;
}


/* payload->key as a validated UUID */
static int
chw_process_payload(chw_job_t *job, const char *key, char *id)
{
    cJSON  *payload, *v;

    payload = cJSON_Parse(job->payload);
    v = cJSON_GetObjectItemCaseSensitive(payload, key);

    if (!cJSON_IsString(v) || !chw_uuid_valid(v->valuestring)) {
        cJSON_Delete(payload);
        snprintf(job->error, sizeof(job->error),
                 "payload has no valid \"%s\"", key);
        return CHW_ERROR;
    }

    memcpy(id, v->valuestring, CHW_UUID_LEN + 1);
    cJSON_Delete(payload);

    return CHW_OK;
}


static PGresult *
chw_process_messages(PGconn *conn, chw_embed_item_t *items, int n)
{
    int          i;
    char        *array, *p;
    PGresult    *res;
    const char  *params[1];

    array = malloc((size_t) n * (CHW_UUID_LEN + 1) + 3);
    if (array == NULL) {
        return NULL;
    }

    p = array;
    *p++ = '{';

    for (i = 0; i < n; i++) {
        p += sprintf(p, "%s%s", i ? "," : "", items[i].message_id);
    }

    strcpy(p, "}");
    params[0] = array;

    res = PQexecParams(conn, chw_process_messages_sql, 1, NULL, params, NULL,
                       NULL, 0);
    free(array);

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        chw_pg_log_error(conn, res, "cannot read the messages", NULL, NULL);
        PQclear(res);
        return NULL;
    }

    return res;
}


/* matches items with rows; returns how many texts go to the embedder */
static int
chw_process_texts(PGresult *res, chw_embed_item_t *items, int n,
    const char **texts)
{
    int  i, r, m;

    m = 0;

    for (i = 0; i < n; i++) {
        items[i].row = -1;

        for (r = 0; r < PQntuples(res); r++) {
            if (strcasecmp(PQgetvalue(res, r, 0), items[i].message_id) == 0) {
                items[i].row = r;
                items[i].text = PQgetvalue(res, r, 1);
                texts[m++] = items[i].text;
                break;
            }
        }
    }

    return m;
}


static int
chw_process_store(PGconn *conn, chw_embedder_t *e, chw_embed_item_t *item,
    const float *vec)
{
    int          i, dim, rc;
    char        *text, *p;
    const char  *params[3];

    dim = chw_embed_dim(e);

    text = malloc((size_t) dim * 16 + 3);
    if (text == NULL) {
        snprintf(item->job->error, sizeof(item->job->error), "out of memory");
        return CHW_ERROR;
    }

    p = text;
    *p++ = '[';

    for (i = 0; i < dim; i++) {
        p += sprintf(p, "%s%.8g", i ? "," : "", (double) vec[i]);
    }

    strcpy(p, "]");

    params[0] = item->message_id;
    params[1] = text;
    params[2] = chw_embed_model(e);

    rc = chw_pg_command(conn, chw_process_store_sql, 3, params);
    free(text);

    if (rc != CHW_OK) {
        snprintf(item->job->error, sizeof(item->job->error),
                 "cannot store the embedding");
    }

    return rc;
}


static void
chw_process_delete_audio(chw_config_t *cf, chw_job_t *job)
{
    long  files;
    char  id[CHW_UUID_LEN + 1], sfiles[24];

    if (chw_process_payload(job, "session_id", id) != CHW_OK) {
        return;
    }

    if (cf->audio_storage_path == NULL) {
        job->rc = CHW_OK;
        return;
    }

    files = 0;

    if (chw_audio_remove(cf->audio_storage_path, id, &files) != CHW_OK) {
        snprintf(job->error, sizeof(job->error),
                 "cannot remove the audio directory of %s", id);
        return;
    }

    snprintf(sfiles, sizeof(sfiles), "%ld", files);
    chw_log(CHW_LOG_INFO, "session audio removed", "session", id,
            "files", sfiles, NULL);

    job->rc = CHW_OK;
}


static void
chw_process_fail_all(chw_embed_item_t *items, int n, int rc, const char *err)
{
    int  i;

    for (i = 0; i < n; i++) {
        items[i].job->rc = rc;
        snprintf(items[i].job->error, sizeof(items[i].job->error), "%s", err);
    }
}
