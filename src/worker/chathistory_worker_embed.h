
/*
 * The embedding providers' side of chathistory_worker_embed.c.
 */


#ifndef _CHATHISTORY_WORKER_EMBED_H_INCLUDED_
#define _CHATHISTORY_WORKER_EMBED_H_INCLUDED_


#include <curl/curl.h>
#include <cjson/cJSON.h>

#include "chathistory_worker.h"


typedef struct {
    CURL      *curl;
    char      *buf;
    size_t     len;
    size_t     cap;
    long       status;
    int        too_big;
} chw_http_t;


typedef int (*chw_embed_pt)(chw_embedder_t *e, const char **texts, size_t n,
    float *out, char *err, size_t errlen);


struct chw_embedder_s {
    const char    *provider;
    const char    *model;        /* what embedding_model records */
    const char    *url;
    const char    *prefix;       /* "search_document: " for nomic models */
    const char    *api_key;
    size_t         max_chars;
    int            dim;          /* of messages.embedding */
    int            got_dim;      /* of the last vector the server sent */
    int            legacy;       /* an old Ollama: /api/embeddings only */
    chw_embed_pt   embed;
    chw_http_t     http;
};


/* chathistory_worker_http.c */
int chw_http_init(chw_http_t *h, double timeout);
int chw_http_post(chw_http_t *h, const char *url, const char *token,
    const char *body, char *err, size_t errlen);
void chw_http_free(chw_http_t *h);

/* chathistory_worker_embed.c */
int chw_embed_vector(chw_embedder_t *e, const cJSON *array, float *out,
    char *err, size_t errlen);
char *chw_embed_url(const char *base, const char *path);
void chw_embed_http_error(chw_embedder_t *e, const char *what, char *err,
    size_t errlen);

/* the providers */
int chw_ollama_embed(chw_embedder_t *e, const char **texts, size_t n,
    float *out, char *err, size_t errlen);
int chw_openai_embed(chw_embedder_t *e, const char **texts, size_t n,
    float *out, char *err, size_t errlen);


#endif /* _CHATHISTORY_WORKER_EMBED_H_INCLUDED_ */
