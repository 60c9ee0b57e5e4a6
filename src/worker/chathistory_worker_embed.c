
/*
 * Embeddings: provider dispatch, the document prefix, cutting long texts,
 * checking the dimension and L2-normalising whatever the server returns.
 */


#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "chathistory_hash_embed.h"
#include "chathistory_worker_embed.h"


#define CHW_OLLAMA_URL      "http://127.0.0.1:11434"
#define CHW_OLLAMA_MODEL    "nomic-embed-text"
#define CHW_NOMIC_PREFIX    "search_document: "


static int chw_embed_setup(chw_embedder_t *e, chw_config_t *cf);
static int chw_embed_column_dim(chw_embedder_t *e, PGconn *conn);
static int chw_hash_embed(chw_embedder_t *e, const char **texts, size_t n,
    float *out, char *err, size_t errlen);
static char *chw_embed_document(chw_embedder_t *e, const char *text);
static int chw_embed_normalize(float *v, int dim);


/*
 * The provider of the settings, checked against the messages.embedding
 * column: a vector of another dimension stops the start-up.
 */
chw_embedder_t *
chw_embed_open(chw_config_t *cf, PGconn *conn)
{
    chw_embedder_t  *e;

    e = calloc(1, sizeof(chw_embedder_t));
    if (e == NULL) {
        chw_log(CHW_LOG_ERROR, "out of memory", NULL);
        return NULL;
    }

    if (chw_embed_setup(e, cf) != CHW_OK
        || chw_embed_column_dim(e, conn) != CHW_OK)
    {
        chw_embed_close(e);
        return NULL;
    }

    if (e->embed != chw_hash_embed && e->dim != CHATHISTORY_HASH_DIM) {
        chw_log(CHW_LOG_WARN, "messages.embedding is not 768-dimensional; "
                "the module's hash queries will not match", NULL);
    }

    chw_log(CHW_LOG_INFO, "embedding provider ready",
            "provider", e->provider, "model", e->model, "url", e->url,
            NULL);

    return e;
}


static int
chw_embed_setup(chw_embedder_t *e, chw_config_t *cf)
{
    e->provider = cf->embedding_provider;
    e->max_chars = (size_t) cf->embedding_max_chars;
    e->prefix = "";

    if (strcmp(e->provider, "hash") == 0) {
        e->model = CHATHISTORY_HASH_MODEL;
        e->embed = chw_hash_embed;
        return CHW_OK;
    }

    if (strcmp(e->provider, "ollama") == 0) {
        e->url = cf->embedding_url ? cf->embedding_url : CHW_OLLAMA_URL;
        e->model = cf->embedding_model ? cf->embedding_model
                                       : CHW_OLLAMA_MODEL;
        e->embed = chw_ollama_embed;

    } else {
        e->url = cf->embedding_url;
        e->model = cf->embedding_model;
        e->embed = chw_openai_embed;

        e->api_key = getenv("CHATHISTORY_EMBEDDING_API_KEY");
        if (e->api_key == NULL || *e->api_key == '\0') {
            e->api_key = getenv("OPENAI_API_KEY");
        }

        if (e->url == NULL || e->model == NULL) {
            chw_log(CHW_LOG_ERROR, "the openai provider needs embedding_url "
                    "and embedding_model", NULL);
            return CHW_ERROR;
        }
    }

    if (strstr(e->model, "nomic") != NULL) {
        e->prefix = CHW_NOMIC_PREFIX;
    }

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        chw_log(CHW_LOG_ERROR, "curl_global_init() failed", NULL);
        return CHW_ERROR;
    }

    return chw_http_init(&e->http, cf->embedding_timeout);
}


static int
chw_embed_column_dim(chw_embedder_t *e, PGconn *conn)
{
    char  *v;

    v = chw_pg_value(conn, "SELECT atttypmod FROM pg_attribute "
                     "WHERE attrelid = 'messages'::regclass "
                     "AND attname = 'embedding'", 0, NULL);
    if (v == NULL) {
        chw_log(CHW_LOG_ERROR, "cannot read the dimension of "
                "messages.embedding; is the database migrated?", NULL);
        return CHW_ERROR;
    }

    e->dim = atoi(v);
    free(v);

    if (e->dim <= 0 || e->dim > 16000) {
        chw_log(CHW_LOG_ERROR, "messages.embedding has no dimension", NULL);
        return CHW_ERROR;
    }

    return CHW_OK;
}


void
chw_embed_close(chw_embedder_t *e)
{
    if (e == NULL) {
        return;
    }

    if (e->embed != NULL && e->embed != chw_hash_embed) {
        chw_http_free(&e->http);
        curl_global_cleanup();
    }

    free(e);
}


const char *
chw_embed_model(chw_embedder_t *e)
{
    return e->model;
}


int
chw_embed_dim(chw_embedder_t *e)
{
    return e->dim;
}


/*
 * Embeds n documents into out[n * dim]: each is cut to max_chars bytes,
 * prefixed, sent in one batch, checked and normalised.
 */
int
chw_embed_documents(chw_embedder_t *e, const char **texts, size_t n,
    float *out, char *err, size_t errlen)
{
    int      rc;
    char   **docs;
    size_t   i;

    docs = calloc(n ? n : 1, sizeof(char *));
    if (docs == NULL) {
        snprintf(err, errlen, "out of memory");
        return CHW_ERROR;
    }

    rc = CHW_OK;

    for (i = 0; i < n && rc == CHW_OK; i++) {
        docs[i] = chw_embed_document(e, texts[i]);
        if (docs[i] == NULL) {
            snprintf(err, errlen, "out of memory");
            rc = CHW_ERROR;
        }
    }

    e->got_dim = 0;

    if (rc == CHW_OK) {
        rc = e->embed(e, (const char **) docs, n, out, err, errlen);
    }

    for (i = 0; i < n && rc == CHW_OK; i++) {
        if (chw_embed_normalize(out + i * e->dim, e->dim) != CHW_OK) {
            snprintf(err, errlen, "the embedding server returned a zero "
                     "or non-finite vector");
            rc = CHW_ERROR;
        }
    }

    for (i = 0; i < n; i++) {
        free(docs[i]);
    }

    free(docs);

    return rc;
}


/* the prefix and the text cut to max_chars bytes at a UTF-8 boundary */
static char *
chw_embed_document(chw_embedder_t *e, const char *text)
{
    char    *doc;
    size_t   len, plen;

    len = strlen(text);

    if (len > e->max_chars) {
        len = e->max_chars;

        while (len > 0 && ((unsigned char) text[len] & 0xc0) == 0x80) {
            len--;
        }
    }

    plen = strlen(e->prefix);

    doc = malloc(plen + len + 1);
    if (doc == NULL) {
        return NULL;
    }

    memcpy(doc, e->prefix, plen);
    memcpy(doc + plen, text, len);
    doc[plen + len] = '\0';

    return doc;
}


static int
chw_hash_embed(chw_embedder_t *e, const char **texts, size_t n, float *out,
    char *err, size_t errlen)
{
    size_t  i;

    if (e->dim != CHATHISTORY_HASH_DIM) {
        e->got_dim = CHATHISTORY_HASH_DIM;
        snprintf(err, errlen, "expected %d dimensions, not %d",
                 e->dim, CHATHISTORY_HASH_DIM);
        return CHW_ERROR;
    }

    for (i = 0; i < n; i++) {
        chathistory_hash_embed((const unsigned char *) texts[i],
                               strlen(texts[i]), out + i * e->dim);
    }

    e->got_dim = e->dim;

    return CHW_OK;
}


/* a JSON array of dim numbers into out */
int
chw_embed_vector(chw_embedder_t *e, const cJSON *array, float *out,
    char *err, size_t errlen)
{
    int           i, n;
    const cJSON  *v;

    if (!cJSON_IsArray(array)) {
        snprintf(err, errlen, "the embedding is not an array");
        return CHW_ERROR;
    }

    n = cJSON_GetArraySize(array);
    e->got_dim = n;

    if (n != e->dim) {
        snprintf(err, errlen, "expected %d dimensions, not %d", e->dim, n);
        return CHW_ERROR;
    }

    i = 0;

    cJSON_ArrayForEach(v, array) {
        if (!cJSON_IsNumber(v)) {
            snprintf(err, errlen, "the embedding holds a non-number");
            return CHW_ERROR;
        }

        out[i++] = (float) v->valuedouble;
    }

    return CHW_OK;
}


static int
chw_embed_normalize(float *v, int dim)
{
    int     i;
    double  norm;

    norm = 0.0;

    for (i = 0; i < dim; i++) {
        norm += (double) v[i] * v[i];
    }

    norm = sqrt(norm);

    if (!(norm > 0.0) || !isfinite(norm)) {
        return CHW_ERROR;
    }

    for (i = 0; i < dim; i++) {
        v[i] = (float) (v[i] / norm);
    }

    return CHW_OK;
}


/* base and path joined with exactly one slash; malloc()ed */
char *
chw_embed_url(const char *base, const char *path)
{
    char    *url;
    size_t   len;

    len = strlen(base);

    while (len > 0 && base[len - 1] == '/') {
        len--;
    }

    url = malloc(len + strlen(path) + 1);
    if (url == NULL) {
        return NULL;
    }

    memcpy(url, base, len);
    strcpy(url + len, path);

    return url;
}


/* a non-2xx answer: the status and the start of the body */
void
chw_embed_http_error(chw_embedder_t *e, const char *what, char *err,
    size_t errlen)
{
    snprintf(err, errlen, "%s answered %ld: %.160s", what, e->http.status,
             e->http.buf != NULL ? e->http.buf : "");
}
