
/*
 * embed-raw: the worker's embedding code called in a loop, without the job
 * queue: the raw rate of a provider, for bench/worker.
 *
 *   embed-raw [worker settings] --texts FILE [--part I/N]
 *
 * Takes the worker's own settings (--embedding-provider, --embedding-url,
 * --embedding-model, --batch-size, --database-url, ... and their environment
 * variables) through chw_config_parse(), and opens the provider with
 * chw_embed_open(), which reads the dimension of messages.embedding: that
 * single query at start-up is the only use of PostgreSQL, the connection is
 * closed before the loop. Then, like `run`, embeds a probe text, and then
 * FILE's texts (NUL-separated, as `psql -tA -0` writes them) with
 * chw_embed_documents() in batches of batch_size. With --part I/N only the
 * batches whose number modulo N is I (0 <= I < N): N processes started at
 * once share the file as N workers share the queue.
 *
 * Prints one line on stdout: "texts T start S end E rate R": the texts
 * embedded, CLOCK_MONOTONIC (system-wide, so comparable between processes)
 * at the loop's start and end, and T / (E - S). Exits 1 on the first error.
 *
 * Built by bench/worker (not by the Makefile) from this file, the
 * worker files it needs (_embed, _http, _ollama, _openai, _config, _log,
 * _pg, _signal; not its main) and the src/common sources, unchanged.
 */


#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "chathistory_worker.h"


static double
embed_raw_now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return (double) ts.tv_sec + ts.tv_nsec / 1e9;
}


/* the file's NUL-separated texts; *n of them, in one buffer */
static const char **
embed_raw_texts(const char *path, size_t *n)
{
    char         *buf;
    long          len;
    size_t        i, m;
    FILE         *f;
    const char  **texts;

    f = fopen(path, "rb");
    if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0
        || fseek(f, 0, SEEK_SET) != 0)
    {
        perror(path);
        return NULL;
    }

    buf = malloc((size_t) len + 1);
    if (buf == NULL || fread(buf, 1, (size_t) len, f) != (size_t) len) {
        perror(path);
        return NULL;
    }

    fclose(f);

    /* psql -0 ends every record with a NUL; tolerate a missing last one */
    buf[len] = '\0';

    for (i = 0, m = 0; i < (size_t) len; i++) {
        if (buf[i] == '\0') {
            m++;
        }
    }

    if (len > 0 && buf[len - 1] != '\0') {
        m++;
    }

    texts = calloc(m ? m : 1, sizeof(char *));
    if (texts == NULL) {
        perror("calloc");
        return NULL;
    }

    for (i = 0, m = 0; i < (size_t) len; i += strlen(buf + i) + 1) {
        texts[m++] = buf + i;
    }

    *n = m;

    return texts;
}


int
main(int argc, char **argv)
{
    int              i, nrest, dim, rc, part, nparts;
    char             err[256];
    float           *out;
    double           t0, t1;
    size_t           n, k, m, batch, done;
    PGconn          *conn;
    const char      *file, *probe;
    const char     **texts;
    chw_config_t     cf;
    chw_embedder_t  *e;

    if (chw_config_parse(&cf, argc, argv, &nrest) != CHW_OK) {
        return 2;
    }

    file = NULL;
    part = 0;
    nparts = 1;

    for (i = 0; i < nrest; i++) {
        if (strcmp(argv[i], "--texts") == 0 && i + 1 < nrest) {
            file = argv[++i];

        } else if (strcmp(argv[i], "--part") == 0 && i + 1 < nrest
                   && sscanf(argv[i + 1], "%d/%d", &part, &nparts) == 2)
        {
            i++;

        } else {
            fprintf(stderr, "usage: embed-raw [worker settings] --texts FILE "
                    "[--part I/N]\n");
            return 2;
        }
    }

    if (file == NULL || cf.database_url == NULL || nparts < 1 || part < 0
        || part >= nparts)
    {
        fprintf(stderr, "embed-raw: --texts FILE and --database-url are "
                "needed; --part I/N with 0 <= I < N\n");
        return 2;
    }

    texts = embed_raw_texts(file, &n);
    if (texts == NULL) {
        return 1;
    }

    if (n == 0) {
        fprintf(stderr, "embed-raw: %s holds no text\n", file);
        return 1;
    }

    conn = chw_pg_connect(&cf, 1);
    if (conn == NULL) {
        return 1;
    }

    e = chw_embed_open(&cf, conn);
    PQfinish(conn);

    if (e == NULL) {
        return 1;
    }

    batch = (size_t) cf.batch_size;
    dim = chw_embed_dim(e);

    out = malloc(batch * (size_t) dim * sizeof(float));
    if (out == NULL) {
        perror("malloc");
        return 1;
    }

    /* as run does: the probe, which also opens the HTTP connection */
    probe = "dimension probe";

    if (chw_embed_documents(e, &probe, 1, out, err, sizeof(err)) != CHW_OK) {
        fprintf(stderr, "embed-raw: probe: %s\n", err);
        return 1;
    }

    done = 0;
    t0 = embed_raw_now();

    for (k = 0; k < n; k += batch) {
        if ((k / batch) % (size_t) nparts != (size_t) part) {
            continue;
        }

        m = n - k < batch ? n - k : batch;

        rc = chw_embed_documents(e, texts + k, m, out, err, sizeof(err));
        if (rc != CHW_OK) {
            fprintf(stderr, "embed-raw: texts %zu..: %s\n", k, err);
            return 1;
        }

        done += m;
    }

    t1 = embed_raw_now();

    chw_embed_close(e);

    printf("texts %zu start %.6f end %.6f rate %.3f\n", done, t0, t1,
           t1 > t0 ? (double) done / (t1 - t0) : 0.0);

    return 0;
}
