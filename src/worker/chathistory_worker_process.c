
/*
 * Doing a batch of claimed jobs: embed_message jobs together, as one
 * embedding request, then delete_audio jobs one by one. The vectors stay in
 * the batch; chathistory_worker_store.c writes them.
 */


#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cjson/cJSON.h>

#include "chathistory_worker.h"


static int chw_process_payload(chw_job_t *job, const char *key, char *id);
static void chw_process_embed(chw_embedder_t *e, chw_batch_t *b);
static PGresult *chw_process_messages(PGconn *conn, chw_batch_t *b, int n);
static void chw_process_texts(PGresult *res, chw_batch_t *b);
static void chw_process_delete_audio(chw_config_t *cf, chw_job_t *job);
static void chw_process_fail_embeds(chw_batch_t *b, int rc, const char *err);


static const char  chw_process_messages_sql[] =
    "SELECT id, concat_ws(E'\\n', nullif(source_text, ''), "
    "nullif(translated_text, '')) FROM messages WHERE id = ANY($1::uuid[])";


/*
 * The texts of the batch's embed_message jobs, read before the previous
 * batch's write is sent: the connection is free only then. A message gone
 * (its session deleted) leaves its job done with nothing to store.
 */
void
chw_process_read(PGconn *conn, chw_batch_t *b)
{
    int         i, m;
    PGresult   *res;
    chw_job_t  *job;

    for (i = 0, m = 0; i < b->n; i++) {
        job = &b->jobs[i];

        if (strcmp(job->kind, "embed_message") == 0
            && chw_process_payload(job, "message_id", job->message_id)
               == CHW_OK)
        {
            m++;
        }
    }

    if (m == 0) {
        return;
    }

    res = chw_process_messages(conn, b, m);
    if (res == NULL) {
        chw_process_fail_embeds(b, CHW_ERROR, "cannot read the messages");
        return;
    }

    b->messages = res;
    chw_process_texts(res, b);
}


/* embeds the texts as one request, then the other kinds one by one */
void
chw_process_batch(chw_config_t *cf, chw_embedder_t *e, chw_batch_t *b)
{
    int         i;
    chw_job_t  *job;

    chw_process_embed(e, b);

    for (i = 0; i < b->n; i++) {
        job = &b->jobs[i];

        if (strcmp(job->kind, "delete_audio") == 0) {
            chw_process_delete_audio(cf, job);

        } else if (strcmp(job->kind, "embed_message") != 0) {
            snprintf(job->error, sizeof(job->error),
                     "unknown job kind \"%.64s\"", job->kind);
        }
    }
}


static void
chw_process_embed(chw_embedder_t *e, chw_batch_t *b)
{
    int           i, t, dim, rc;
    char          err[256];
    const char  **texts;

    for (i = 0, t = 0; i < b->n; i++) {
        if (b->jobs[i].text != NULL) {
            t++;
        }
    }

    if (t == 0) {
        return;
    }

    dim = chw_embed_dim(e);
    texts = calloc(t, sizeof(char *));
    b->vecs = malloc((size_t) t * dim * sizeof(float));

    if (texts == NULL || b->vecs == NULL) {
        free(texts);
        chw_log(CHW_LOG_ERROR, "out of memory", NULL);
        chw_process_fail_embeds(b, CHW_ERROR, "out of memory");
        return;
    }

    for (i = 0, t = 0; i < b->n; i++) {
        if (b->jobs[i].text != NULL) {
            texts[t++] = b->jobs[i].text;
        }
    }

    rc = chw_embed_documents(e, texts, t, b->vecs, err, sizeof(err));
    free(texts);

    if (rc != CHW_OK) {
        chw_process_fail_embeds(b, rc, err);
        return;
    }

    for (i = 0, t = 0; i < b->n; i++) {
        if (b->jobs[i].text != NULL) {
            b->jobs[i].vec = b->vecs + (size_t) t++ * dim;
        }
    }
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
chw_process_messages(PGconn *conn, chw_batch_t *b, int n)
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

    for (i = 0; i < b->n; i++) {
        if (b->jobs[i].message_id[0] != '\0') {
            p += sprintf(p, "%s%s", p - array > 1 ? "," : "",
                         b->jobs[i].message_id);
        }
    }

    strcpy(p, "}");
    params[0] = array;

    res = chw_pg_exec(conn, chw_process_messages_sql, 1, params);
    free(array);

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        chw_pg_log_error(conn, res, "cannot read the messages", NULL, NULL);
        PQclear(res);
        return NULL;
    }

    return res;
}


/* matches jobs with rows: a job without one is done, nothing to embed */
static void
chw_process_texts(PGresult *res, chw_batch_t *b)
{
    int         i, r;
    chw_job_t  *job;

    for (i = 0; i < b->n; i++) {
        job = &b->jobs[i];

        if (job->message_id[0] == '\0') {
            continue;
        }

        job->rc = CHW_OK;

        for (r = 0; r < PQntuples(res); r++) {
            if (strcasecmp(PQgetvalue(res, r, 0), job->message_id) == 0) {
                job->text = PQgetvalue(res, r, 1);
                break;
            }
        }
    }
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


/* the batch's embed_message jobs with a valid payload fail together */
static void
chw_process_fail_embeds(chw_batch_t *b, int rc, const char *err)
{
    int         i;
    chw_job_t  *job;

    for (i = 0; i < b->n; i++) {
        job = &b->jobs[i];

        if (job->message_id[0] == '\0') {
            continue;
        }

        job->rc = rc;
        job->text = NULL;
        job->vec = NULL;
        snprintf(job->error, sizeof(job->error), "%s", err);
    }
}
