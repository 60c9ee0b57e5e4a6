
/*
 * The ollama provider: POST /api/embed with every text of the batch; an old
 * server without it (404 that is not a JSON error) gets /api/embeddings,
 * one text per request, from then on.
 */


#include <stdlib.h>
#include <string.h>

#include "chathistory_worker_embed.h"


static int chw_ollama_batch(chw_embedder_t *e, const char **texts, size_t n,
    float *out, char *err, size_t errlen);
static int chw_ollama_legacy(chw_embedder_t *e, const char *text, float *out,
    char *err, size_t errlen);
static int chw_ollama_post(chw_embedder_t *e, const char *path, cJSON *body,
    char *err, size_t errlen);
static int chw_ollama_is_old(chw_embedder_t *e);


int
chw_ollama_embed(chw_embedder_t *e, const char **texts, size_t n, float *out,
    char *err, size_t errlen)
{
    int     rc;
    size_t  i;

    if (!e->legacy) {
        rc = chw_ollama_batch(e, texts, n, out, err, errlen);
        if (rc != CHW_DECLINED) {
            return rc;
        }

        e->legacy = 1;
        chw_log(CHW_LOG_WARN, "Ollama has no /api/embed, falling back to "
                "/api/embeddings (one text per request)", "url", e->url,
                NULL);
    }

    for (i = 0; i < n; i++) {
        rc = chw_ollama_legacy(e, texts[i], out + i * e->dim, err, errlen);
        if (rc != CHW_OK) {
            return rc;
        }
    }

    return CHW_OK;
}


/* CHW_DECLINED: an old server */
static int
chw_ollama_batch(chw_embedder_t *e, const char **texts, size_t n, float *out,
    char *err, size_t errlen)
{
    int          rc;
    size_t       i;
    cJSON       *body, *res;
    const cJSON  *v, *vec;

    body = cJSON_CreateObject();
    if (body == NULL
        || cJSON_AddStringToObject(body, "model", e->model) == NULL
        || cJSON_AddItemToObject(body, "input",
               cJSON_CreateStringArray(texts, (int) n)) == 0)
    {
        cJSON_Delete(body);
        snprintf(err, errlen, "out of memory");
        return CHW_ERROR;
    }

    rc = chw_ollama_post(e, "/api/embed", body, err, errlen);
    cJSON_Delete(body);

    if (rc != CHW_OK) {
        return rc;
    }

    if (e->http.status == 404 && chw_ollama_is_old(e)) {
        return CHW_DECLINED;
    }

    if (e->http.status != 200) {
        chw_embed_http_error(e, "Ollama /api/embed", err, errlen);
        return CHW_ERROR;
    }

    res = cJSON_Parse(e->http.buf);
    v = cJSON_GetObjectItemCaseSensitive(res, "embeddings");

    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != (int) n) {
        cJSON_Delete(res);
        snprintf(err, errlen, "Ollama /api/embed: no \"embeddings\" array "
                 "of %zu vectors", n);
        return CHW_ERROR;
    }

    i = 0;
    rc = CHW_OK;

    cJSON_ArrayForEach(vec, v) {
        rc = chw_embed_vector(e, vec, out + i++ * e->dim, err, errlen);
        if (rc != CHW_OK) {
            break;
        }
    }

    cJSON_Delete(res);

    return rc;
}


static int
chw_ollama_legacy(chw_embedder_t *e, const char *text, float *out, char *err,
    size_t errlen)
{
    int     rc;
    cJSON  *body, *res;

    body = cJSON_CreateObject();
    if (body == NULL
        || cJSON_AddStringToObject(body, "model", e->model) == NULL
        || cJSON_AddStringToObject(body, "prompt", text) == NULL)
    {
        cJSON_Delete(body);
        snprintf(err, errlen, "out of memory");
        return CHW_ERROR;
    }

    rc = chw_ollama_post(e, "/api/embeddings", body, err, errlen);
    cJSON_Delete(body);

    if (rc != CHW_OK) {
        return rc;
    }

    if (e->http.status != 200) {
        chw_embed_http_error(e, "Ollama /api/embeddings", err, errlen);
        return CHW_ERROR;
    }

    res = cJSON_Parse(e->http.buf);

    rc = chw_embed_vector(e, cJSON_GetObjectItemCaseSensitive(res,
                                                              "embedding"),
                          out, err, errlen);
    cJSON_Delete(res);

    return rc;
}


static int
chw_ollama_post(chw_embedder_t *e, const char *path, cJSON *body, char *err,
    size_t errlen)
{
    int    rc;
    char  *url, *json;

    url = chw_embed_url(e->url, path);
    json = cJSON_PrintUnformatted(body);

    if (url == NULL || json == NULL) {
        free(url);
        free(json);
        snprintf(err, errlen, "out of memory");
        return CHW_ERROR;
    }

    rc = chw_http_post(&e->http, url, NULL, json, err, errlen);

    free(url);
    free(json);

    return rc;
}


/* a new Ollama answers 404 with {"error": "model ... not found"} */
static int
chw_ollama_is_old(chw_embedder_t *e)
{
    int     old;
    cJSON  *res;

    res = cJSON_Parse(e->http.buf != NULL ? e->http.buf : "");
    old = !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(res, "error"));
    cJSON_Delete(res);

    return old;
}
