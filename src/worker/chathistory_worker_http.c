
/*
 * HTTP for the embedding providers: one libcurl easy handle, reused so that
 * the connection is kept alive between batches, with a total timeout.
 */


#include <stdlib.h>
#include <string.h>

#include "chathistory_worker.h"
#include "chathistory_worker_embed.h"


#define CHW_HTTP_MAX_RESPONSE  (256 * 1024 * 1024)


static size_t chw_http_write(char *data, size_t size, size_t nmemb,
    void *arg);
static int chw_http_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow,
    curl_off_t ultotal, curl_off_t ulnow);


int
chw_http_init(chw_http_t *h, double timeout)
{
    memset(h, 0, sizeof(chw_http_t));

    h->curl = curl_easy_init();
    if (h->curl == NULL) {
        chw_log(CHW_LOG_ERROR, "curl_easy_init() failed", NULL);
        return CHW_ERROR;
    }

    curl_easy_setopt(h->curl, CURLOPT_TIMEOUT_MS, (long) (timeout * 1000));
    curl_easy_setopt(h->curl, CURLOPT_CONNECTTIMEOUT_MS,
                     (long) (timeout * 1000 < 10000 ? timeout * 1000 : 10000));
    curl_easy_setopt(h->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h->curl, CURLOPT_USERAGENT, CHW_NAME "/" CHW_VERSION);
    curl_easy_setopt(h->curl, CURLOPT_WRITEFUNCTION, chw_http_write);
    curl_easy_setopt(h->curl, CURLOPT_WRITEDATA, h);
    curl_easy_setopt(h->curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h->curl, CURLOPT_XFERINFOFUNCTION, chw_http_progress);
    curl_easy_setopt(h->curl, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h->curl, CURLOPT_PROTOCOLS_STR, "http,https");

    return CHW_OK;
}


void
chw_http_free(chw_http_t *h)
{
    if (h->curl != NULL) {
        curl_easy_cleanup(h->curl);
    }

    free(h->buf);
    memset(h, 0, sizeof(chw_http_t));
}


/*
 * POSTs a JSON body; on CHW_OK h->status is the HTTP status and h->buf the
 * NUL-terminated response. The bearer token, if any, is never logged.
 */
int
chw_http_post(chw_http_t *h, const char *url, const char *token,
    const char *body, char *err, size_t errlen)
{
    char                auth[1024];
    CURLcode            rc;
    struct curl_slist  *headers, *l;

    h->len = 0;
    h->status = 0;
    h->too_big = 0;

    headers = curl_slist_append(NULL, "Content-Type: application/json");
    l = headers != NULL ? curl_slist_append(headers, "Expect:") : NULL;

    if (l != NULL && token != NULL) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
        l = curl_slist_append(headers, auth);
        memset(auth, 0, sizeof(auth));
    }

    if (l == NULL) {
        curl_slist_free_all(headers);
        snprintf(err, errlen, "out of memory");
        return CHW_ERROR;
    }

    curl_easy_setopt(h->curl, CURLOPT_URL, url);
    curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h->curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h->curl, CURLOPT_POSTFIELDSIZE, (long) strlen(body));

    rc = curl_easy_perform(h->curl);

    curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, NULL);
    curl_slist_free_all(headers);

    if (rc == CURLE_ABORTED_BY_CALLBACK) {
        snprintf(err, errlen, "aborted by SIGTERM");
        return CHW_ABORTED;
    }

    if (rc != CURLE_OK) {
        snprintf(err, errlen, "%s: %s", url,
                 h->too_big ? "response too large" : curl_easy_strerror(rc));
        return CHW_ERROR;
    }

    curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &h->status);

    return CHW_OK;
}


static size_t
chw_http_write(char *data, size_t size, size_t nmemb, void *arg)
{
    char        *p;
    size_t       n, cap;
    chw_http_t  *h;

    h = arg;
    n = size * nmemb;

    if (h->len + n + 1 > h->cap) {
        cap = h->cap ? h->cap : 16384;

        while (cap < h->len + n + 1) {
            cap *= 2;
        }

        if (cap > CHW_HTTP_MAX_RESPONSE) {
            h->too_big = 1;
            return 0;
        }

        p = realloc(h->buf, cap);
        if (p == NULL) {
            return 0;
        }

        h->buf = p;
        h->cap = cap;
    }

    memcpy(h->buf + h->len, data, n);
    h->len += n;
    h->buf[h->len] = '\0';

    return n;
}


/* a second SIGTERM aborts the transfer */
static int
chw_http_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow,
    curl_off_t ultotal, curl_off_t ulnow)
{
    return chw_stop_now ? 1 : 0;
}
