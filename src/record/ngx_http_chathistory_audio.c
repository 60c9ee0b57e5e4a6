
/*
 * A message's audio: the request body, encoded to Ogg Opus in the thread
 * pool and stored as {storage}/{session_id}/{message_id}.opus, written to
 * a temporary name and renamed so that no reader sees half a file.
 */


#include "ngx_http_chathistory_audio.h"
#include "chathistory_audio.h"


#define CH_AUDIO_HOLD  60000


typedef struct {
    ngx_http_chathistory_record_t  *rec;
    const u_char                   *body;
    size_t                          len;
    ngx_fd_t                        fd;
    off_t                           offset;
    size_t                          max;
    char                           *type;
    char                           *dir;
    char                           *tmp;
    char                           *path;
    unsigned                        ms;
    ngx_uint_t                      ok;
    char                            err[128];
} ngx_http_chathistory_audio_task_t;


typedef struct {
    ngx_pool_t                     *pool;
    char                           *path;
    int                             err;
} ngx_http_chathistory_audio_unlink_t;


static void ngx_http_chathistory_audio_hold(ngx_log_t *log);
static void ngx_http_chathistory_audio_held(ngx_event_t *ev);
static void ngx_http_chathistory_audio_thread(void *data, ngx_log_t *log);
static u_char *ngx_http_chathistory_audio_read(
    ngx_http_chathistory_audio_task_t *t);
static void ngx_http_chathistory_audio_write(
    ngx_http_chathistory_audio_task_t *t, chathistory_audio_out_t *out);
static void ngx_http_chathistory_audio_done(ngx_event_t *ev);
static char *ngx_http_chathistory_audio_path(ngx_pool_t *pool,
    ngx_str_t *storage, const char *session, const char *message,
    const char *suffix);
static void ngx_http_chathistory_audio_unlink_thread(void *data,
    ngx_log_t *log);
static void ngx_http_chathistory_audio_unlinked(ngx_event_t *ev);


/* the encodings in the thread pool, and what holds a quitting worker */
typedef struct {
    ngx_uint_t               busy;
    ngx_event_t              hold_event;
} ngx_http_chathistory_audio_work_t;


static ngx_http_chathistory_audio_work_t  ngx_http_chathistory_audio_work;


void
ngx_http_chathistory_audio_store(ngx_http_chathistory_record_t *rec)
{
    ngx_thread_task_t                  *task;
    ngx_http_chathistory_audio_task_t  *t;

    task = ngx_thread_task_alloc(rec->pool,
                                 sizeof(ngx_http_chathistory_audio_task_t));
    if (task == NULL) {
        rec->report(rec, CH_RECORD_ENCODED);
        return;
    }

    t = task->ctx;
    t->rec = rec;
    t->body = rec->audio;
    t->len = rec->audio_len;
    t->fd = rec->audio_fd;
    t->offset = rec->audio_offset;
    t->max = rec->audio_max;
    t->type = (char *) rec->audio_type.data;

    t->dir = ngx_http_chathistory_audio_path(rec->pool, &rec->storage,
                                             (char *) rec->session_id.text,
                                             NULL, NULL);
    t->path = ngx_http_chathistory_audio_path(rec->pool, &rec->storage,
                                              (char *) rec->session_id.text,
                                              (char *) rec->id.text, ".opus");
    t->tmp = ngx_http_chathistory_audio_path(rec->pool, &rec->storage,
                                             (char *) rec->session_id.text,
                                             (char *) rec->id.text,
                                             ".opus.tmp");

    task->handler = ngx_http_chathistory_audio_thread;
    task->event.handler = ngx_http_chathistory_audio_done;
    task->event.data = t;

    if (t->dir == NULL || t->path == NULL || t->tmp == NULL
        || ngx_thread_task_post(rec->conf->thread_pool, task) != NGX_OK)
    {
        rec->report(rec, CH_RECORD_ENCODED);
        return;
    }

    ngx_http_chathistory_audio_hold(rec->log);
}


/*
 * A worker process that is shutting down exits as soon as only cancelable
 * timers are left, and the completion of a task still in the thread pool
 * never runs: its message would be lost. A timer that is not cancelable
 * keeps the worker until the last encoding has come back.
 */
static void
ngx_http_chathistory_audio_hold(ngx_log_t *log)
{
    ngx_event_t  *ev;

    if (ngx_http_chathistory_audio_work.busy++) {
        return;
    }

    ev = &ngx_http_chathistory_audio_work.hold_event;

    ngx_http_chathistory_timer_init(ev, ngx_http_chathistory_audio_held, log,
                                    0);

    ngx_add_timer(ev, CH_AUDIO_HOLD);
}


static void
ngx_http_chathistory_audio_held(ngx_event_t *ev)
{
    if (ngx_http_chathistory_audio_work.busy) {
        ngx_add_timer(ev, CH_AUDIO_HOLD);
    }
}


/* In a thread: no nginx API here, only the task's own memory. */
static void
ngx_http_chathistory_audio_thread(void *data, ngx_log_t *log)
{
    ngx_http_chathistory_audio_task_t  *t = data;

    u_char                    *body;
    chathistory_audio_out_t    out;
    chathistory_audio_opts_t   opts = CHATHISTORY_AUDIO_OPTS_DEFAULT;

    opts.max_input = t->max;

    body = ngx_http_chathistory_audio_read(t);
    if (body == NULL) {
        return;
    }

    out.data = NULL;
    out.len = 0;

    if (chathistory_audio_encode(body, t->len, t->type, &opts, &out, &t->ms,
                                 t->err, sizeof(t->err))
        == 0)
    {
        ngx_http_chathistory_audio_write(t, &out);
        chathistory_audio_out_free(&out);
    }

    if (body != t->body) {
        free(body);
    }
}


/* The body in memory: as it is, or read from nginx's temporary file. */
static u_char *
ngx_http_chathistory_audio_read(ngx_http_chathistory_audio_task_t *t)
{
    u_char   *buf;
    size_t    done;
    ssize_t   n;

    if (t->fd == NGX_INVALID_FILE) {
        return (u_char *) t->body;
    }

    buf = malloc(t->len ? t->len : 1);
    if (buf == NULL) {
        snprintf(t->err, sizeof(t->err), "out of memory");
        return NULL;
    }

    for (done = 0; done < t->len; done += n) {
        n = pread(t->fd, buf + done, t->len - done, t->offset + done);

        if (n <= 0) {
            snprintf(t->err, sizeof(t->err), "reading the body failed: %s",
                     n == 0 ? "end of file" : strerror(errno));
            free(buf);
            return NULL;
        }
    }

    return buf;
}


static void
ngx_http_chathistory_audio_write(ngx_http_chathistory_audio_task_t *t,
    chathistory_audio_out_t *out)
{
    int      fd;
    size_t   done;
    ssize_t  n;

    if (mkdir(t->dir, 0750) == -1 && errno != EEXIST) {
        snprintf(t->err, sizeof(t->err), "mkdir() failed: %s",
                 strerror(errno));
        return;
    }

    fd = open(t->tmp, O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC|O_NOFOLLOW, 0640);
    if (fd == -1) {
        snprintf(t->err, sizeof(t->err), "open() failed: %s",
                 strerror(errno));
        return;
    }

    for (done = 0; done < out->len; done += n) {
        n = write(fd, out->data + done, out->len - done);

        if (n <= 0) {
            snprintf(t->err, sizeof(t->err), "write() failed: %s",
                     n == 0 ? "no space" : strerror(errno));
            (void) close(fd);
            (void) unlink(t->tmp);
            return;
        }
    }

    if (fsync(fd) == -1 || close(fd) == -1) {
        snprintf(t->err, sizeof(t->err), "writing failed: %s",
                 strerror(errno));
        (void) unlink(t->tmp);
        return;
    }

    if (rename(t->tmp, t->path) == -1) {
        snprintf(t->err, sizeof(t->err), "rename() failed: %s",
                 strerror(errno));
        (void) unlink(t->tmp);
        return;
    }

    t->ok = 1;
}


static void
ngx_http_chathistory_audio_done(ngx_event_t *ev)
{
    ngx_http_chathistory_audio_task_t  *t = ev->data;

    u_char                         *p;
    ngx_http_chathistory_record_t  *rec;

    rec = t->rec;

    if (--ngx_http_chathistory_audio_work.busy == 0
        && ngx_http_chathistory_audio_work.hold_event.timer_set)
    {
        ngx_del_timer(&ngx_http_chathistory_audio_work.hold_event);
    }

    if (!t->ok) {
        ngx_log_error(NGX_LOG_WARN, rec->log, 0,
                      "chathistory: message %s recorded without audio: %s",
                      rec->id.text, t->err);
        ngx_http_chathistory_count(CH_STAT_AUDIO_SKIPPED);
        rec->report(rec, CH_RECORD_ENCODED);
        return;
    }

    rec->values[CH_REC_AUDIO_PATH] = ngx_http_chathistory_audio_path(
                                          rec->pool, NULL,
                                          (char *) rec->session_id.text,
                                          (char *) rec->id.text, ".opus");

    p = ngx_pnalloc(rec->pool, NGX_INT_T_LEN + 1);
    if (p != NULL) {
        *ngx_sprintf(p, "%ui", (ngx_uint_t) t->ms) = '\0';
    }

    rec->values[CH_REC_AUDIO_MS] = (char *) p;

    if (rec->values[CH_REC_AUDIO_PATH] == NULL || p == NULL) {
        rec->values[CH_REC_AUDIO_PATH] = NULL;
        rec->values[CH_REC_AUDIO_MS] = NULL;
    }

    ngx_http_chathistory_count(CH_STAT_AUDIO_STORED);

    rec->report(rec, CH_RECORD_ENCODED);
}


/* "{storage}/{session}[/{message}{suffix}]", or relative without storage */
static char *
ngx_http_chathistory_audio_path(ngx_pool_t *pool, ngx_str_t *storage,
    const char *session, const char *message, const char *suffix)
{
    u_char  *p, *start;
    size_t   len;

    len = (storage ? storage->len + 1 : 0) + ngx_strlen(session)
          + (message ? ngx_strlen(message) + ngx_strlen(suffix) + 1 : 0) + 1;

    start = ngx_pnalloc(pool, len);
    if (start == NULL) {
        return NULL;
    }

    p = start;

    if (storage) {
        p = ngx_sprintf(p, "%V/", storage);
    }

    p = ngx_sprintf(p, "%s", session);

    if (message) {
        p = ngx_sprintf(p, "/%s%s", message, suffix);
    }

    *p = '\0';

    return (char *) start;
}


/* The audio of a message that could not be recorded goes too. */
void
ngx_http_chathistory_audio_discard(ngx_http_chathistory_record_t *rec)
{
    ngx_pool_t                           *pool;
    ngx_thread_task_t                    *task;
    ngx_http_chathistory_audio_unlink_t  *u;

    if (rec->values[CH_REC_AUDIO_PATH] == NULL || rec->storage.len == 0) {
        return;
    }

    pool = ngx_create_pool(1024, rec->log);
    if (pool == NULL) {
        return;
    }

    task = ngx_thread_task_alloc(pool,
                                 sizeof(ngx_http_chathistory_audio_unlink_t));
    if (task == NULL) {
        ngx_destroy_pool(pool);
        return;
    }

    u = task->ctx;
    u->pool = pool;
    u->path = ngx_http_chathistory_audio_path(pool, &rec->storage,
                                              (char *) rec->session_id.text,
                                              (char *) rec->id.text, ".opus");

    task->handler = ngx_http_chathistory_audio_unlink_thread;
    task->event.handler = ngx_http_chathistory_audio_unlinked;
    task->event.data = u;

    if (u->path == NULL
        || ngx_thread_task_post(rec->conf->thread_pool, task) != NGX_OK)
    {
        ngx_destroy_pool(pool);
    }
}


static void
ngx_http_chathistory_audio_unlink_thread(void *data, ngx_log_t *log)
{
    ngx_http_chathistory_audio_unlink_t  *u = data;

    if (unlink(u->path) == -1 && errno != ENOENT) {
        u->err = errno;
    }
}


static void
ngx_http_chathistory_audio_unlinked(ngx_event_t *ev)
{
    ngx_http_chathistory_audio_unlink_t  *u = ev->data;

    if (u->err) {
        ngx_log_error(NGX_LOG_CRIT, ev->log, u->err,
                      "chathistory: unlink() \"%s\" failed", u->path);
    }

    ngx_destroy_pool(u->pool);
}
