
/*
 * The openai provider: any OpenAI-compatible POST /v1/embeddings (OpenAI,
 * llama.cpp server, vLLM, TEI), the key from CHATHISTORY_EMBEDDING_API_KEY
 * or OPENAI_API_KEY.
 */


#include <stdlib.h>
#include <string.h>

#include "chathistory_worker_embed.h"


static char *chw_openai_url(const char *base);
static int chw_openai_parse(chw_embedder_t *e, size_t n, float *out,
    char *err, size_t errlen);


int
chw_openai_embed(chw_embedder_t *e, const char **texts, size_t n, float *out,
    char *err, size_t errlen)
{
    int     rc;
    char   *url, *json;
    cJSON  *body;

    body = cJSON_CreateObject();
    if (body == NULL
        || cJSON_AddStringToObject(body, "model", e->model) == NULL
        || cJSON_AddItemToObject(body, "input",
               cJSON_CreateStringArray(texts, (int) n)) == 0
        || cJSON_AddStringToObject(body, "encoding_format", "float") == NULL)
    {
        cJSON_Delete(body);
        snprintf(err, errlen, "out of memory");
        return CHW_ERROR;
    }

    url = chw_openai_url(e->url);
    json = cJSON_PrintUnformatted(body);
    cJSON_Delete(body);

    if (url == NULL || json == NULL) {
        free(url);
        free(json);
        snprintf(err, errlen, "out of memory");
        return CHW_ERROR;
    }

    rc = chw_http_post(&e->http, url, e->api_key, json, err, errlen);

    free(url);
    free(json);

    if (rc != CHW_OK) {
        return rc;
    }

    if (e->http.status != 200) {
        chw_embed_http_error(e, "/v1/embeddings", err, errlen);
        return CHW_ERROR;
    }

    return chw_openai_parse(e, n, out, err, errlen);
}


/* "http://h" → http://h/v1/embeddings; ".../v1" → .../v1/embeddings */
static char *
chw_openai_url(const char *base)
{
    size_t  len;

    len = strlen(base);

    while (len > 0 && base[len - 1] == '/') {
        len--;
    }

    if (len >= 11 && strncmp(base + len - 11, "/embeddings", 11) == 0) {
        return strndup(base, len);
    }

    if (len >= 3 && strncmp(base + len - 3, "/v1", 3) == 0) {
        return chw_embed_url(base, "/embeddings");
    }

    return chw_embed_url(base, "/v1/embeddings");
}


/* {"data": [{"index": i, "embedding": [...]}, ...]}, in any order */
static int
chw_openai_parse(chw_embedder_t *e, size_t n, float *out, char *err,
    size_t errlen)
{
    int           rc;
    cJSON        *res;
    const cJSON  *data, *item, *index;

    res = cJSON_Parse(e->http.buf);
    data = cJSON_GetObjectItemCaseSensitive(res, "data");

    if (!cJSON_IsArray(data) || cJSON_GetArraySize(data) != (int) n) {
        cJSON_Delete(res);
        snprintf(err, errlen, "/v1/embeddings: no \"data\" array of %zu "
                 "items", n);
        return CHW_ERROR;
    }

    rc = CHW_OK;
    cJSON_ArrayForEach(item, data) {
        index = cJSON_GetObjectItemCaseSensitive(item, "index");

        if (!cJSON_IsNumber(index) || index->valueint < 0
            || (size_t) index->valueint >= n)
        {
            snprintf(err, errlen, "/v1/embeddings: bad \"index\"");
            rc = CHW_ERROR;
            break;
        }

        rc = chw_embed_vector(e,
                 cJSON_GetObjectItemCaseSensitive(item, "embedding"),
                 out + (size_t) index->valueint * e->dim, err, errlen);
        if (rc != CHW_OK) {
            break;
        }
    }

    cJSON_Delete(res);

    return rc;
}
