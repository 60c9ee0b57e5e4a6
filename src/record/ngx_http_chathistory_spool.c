
/*
 * The spool: a directory of records the database could not take, each
 * written durably to a file of its own, and replayed by whichever worker
 * process claims it (by renaming it) once the database answers again.
 * All file work runs in the thread pool.
 */


#include <dirent.h>
#include <sys/time.h>

#include "ngx_http_chathistory_spool.h"


#define CH_SPOOL_BATCH       32
#define CH_SPOOL_MAX_FILE    (4 * 1024 * 1024)
#define CH_SPOOL_INTERVAL    1000
#define CH_SPOOL_STALE       60      /* seconds a dead worker's claim lasts */


typedef struct {
    ngx_http_chathistory_record_t  *rec;
    char                           *dir;
    char                           *path;
    char                           *tmp;
    char                           *data;
    size_t                          len;
    int                             err;
} ngx_http_chathistory_spool_write_t;


typedef struct {
    char                           *from;
    char                           *to;      /* NULL: unlink */
    int                             err;
    ngx_http_chathistory_record_t  *rec;
} ngx_http_chathistory_spool_move_t;


typedef struct {
    char                            name[64];
    char                           *data;
    size_t                          len;
} ngx_http_chathistory_spool_item_t;


typedef struct {
    char                                *dir;
    ngx_pid_t                            pid;
    ngx_uint_t                           n;
    ngx_uint_t                           total;   /* all spooled now */
    ngx_http_chathistory_spool_item_t    items[CH_SPOOL_BATCH];
} ngx_http_chathistory_spool_scan_t;


static char *ngx_http_chathistory_spool_serialize(
    ngx_http_chathistory_record_t *rec, size_t *len);
static void ngx_http_chathistory_spool_write_thread(void *data,
    ngx_log_t *log);
static void ngx_http_chathistory_spool_written(ngx_event_t *ev);
static void ngx_http_chathistory_spool_spooled(ngx_http_chathistory_record_t *rec);
static void ngx_http_chathistory_spool_report(ngx_event_t *ev);
static void ngx_http_chathistory_spool_move_thread(void *data, ngx_log_t *log);
static void ngx_http_chathistory_spool_moved(ngx_event_t *ev);
static ngx_int_t ngx_http_chathistory_spool_task_run(ngx_thread_pool_t *tp,
    ngx_thread_task_t *task);
static void ngx_http_chathistory_spool_timer(ngx_event_t *ev);
static void ngx_http_chathistory_spool_scan_thread(void *data, ngx_log_t *log);
static ngx_uint_t ngx_http_chathistory_spool_claim(
    ngx_http_chathistory_spool_scan_t *scan, const char *name);
static char *ngx_http_chathistory_spool_read(const char *path, size_t *len);
static void ngx_http_chathistory_spool_scanned(ngx_event_t *ev);
static void ngx_http_chathistory_spool_replay(
    ngx_http_chathistory_spool_scan_t *scan,
    ngx_http_chathistory_spool_item_t *item);
static ngx_uint_t ngx_http_chathistory_spool_name(const char *name,
    size_t *uuid_len);
static char *ngx_http_chathistory_spool_path(ngx_pool_t *pool,
    ngx_str_t *dir, const char *name, const char *suffix);


/* what a worker process knows of the spool, and does with it */
typedef struct {
    ngx_http_chathistory_main_conf_t      *conf;
    ngx_http_chathistory_record_report_pt  replayed;  /* to the owner */
    ngx_event_t                            event;     /* a look a second */
    ngx_thread_task_t                     *task;
    ngx_uint_t                             busy;

    /*
     * Messages in the spool as this process knows it: all of them at the
     * last look (once a second), and its own since. Other processes'
     * latest are not counted until the next look: the bound may be passed
     * by what they spool in that second, never by more.
     */
    ngx_uint_t                             known;

    /* the process is leaving: its thread pool is gone, files are written
     * here */
    ngx_uint_t                             inline_io;

    /* messages spooled and not yet in a "spooled" line at warn; its timer */
    ngx_uint_t                             unreported;
    ngx_event_t                            report_event;
} ngx_http_chathistory_spool_t;


static ngx_http_chathistory_spool_t  ngx_http_chathistory_spool;


/* Keep a record the database could not take, or give a claim back. */
void
ngx_http_chathistory_spool_write(ngx_http_chathistory_record_t *rec)
{
    ngx_thread_task_t                   *task;
    ngx_http_chathistory_main_conf_t    *cmcf;
    ngx_http_chathistory_spool_write_t  *w;

    cmcf = rec->conf;

    if (rec->spool_file.len) {
        /* a replayed record goes back where it came from */
        ngx_http_chathistory_spool_move(rec, (char *) rec->spool_file.data,
            ngx_http_chathistory_spool_path(rec->pool, &cmcf->spool_path,
                                            (char *) rec->id.text, ".json"));
        return;
    }

    if (ngx_http_chathistory_spool.known >= cmcf->spool_max) {
        ngx_log_error(NGX_LOG_CRIT, rec->log, 0,
                      "chathistory: message %s lost: the spool \"%V\" holds "
                      "its maximum of %ui messages", rec->id.text,
                      &cmcf->spool_path, cmcf->spool_max);
        ngx_http_chathistory_count(CH_STAT_MESSAGE_LOST);
        ngx_http_chathistory_record_free(rec);
        return;
    }

    task = ngx_thread_task_alloc(rec->pool,
                                 sizeof(ngx_http_chathistory_spool_write_t));
    if (task == NULL) {
        goto lost;
    }

    w = task->ctx;
    w->rec = rec;
    w->dir = (char *) cmcf->spool_path.data;
    w->path = ngx_http_chathistory_spool_path(rec->pool, &cmcf->spool_path,
                                              (char *) rec->id.text, ".json");
    w->tmp = ngx_http_chathistory_spool_path(rec->pool, &cmcf->spool_path,
                                             (char *) rec->id.text, ".tmp");
    w->data = ngx_http_chathistory_spool_serialize(rec, &w->len);

    if (w->path == NULL || w->tmp == NULL || w->data == NULL) {
        goto lost;
    }

    task->handler = ngx_http_chathistory_spool_write_thread;
    task->event.handler = ngx_http_chathistory_spool_written;
    task->event.data = w;

    if (ngx_http_chathistory_spool_task_run(cmcf->thread_pool, task)
        == NGX_OK)
    {
        ngx_http_chathistory_spool.known++;
        return;
    }

lost:

    ngx_log_error(NGX_LOG_CRIT, rec->log, 0,
                  "chathistory: message %s lost: cannot spool it",
                  rec->id.text);
    ngx_http_chathistory_record_free(rec);
}


/* The record as JSON, with the canonical names of its fields. */
static char *
ngx_http_chathistory_spool_serialize(ngx_http_chathistory_record_t *rec,
    size_t *len)
{
    char   *text, *copy;
    cJSON  *json;

    json = ngx_http_chathistory_record_json(rec);
    if (json == NULL) {
        return NULL;
    }

    text = cJSON_PrintUnformatted(json);
    cJSON_Delete(json);

    if (text == NULL) {
        return NULL;
    }

    *len = ngx_strlen(text);

    copy = ngx_pnalloc(rec->pool, *len);
    if (copy != NULL) {
        ngx_memcpy(copy, text, *len);
    }

    cJSON_free(text);

    return copy;
}


/* In a thread: write to a temporary name, sync, rename, sync the dir. */
static void
ngx_http_chathistory_spool_write_thread(void *data, ngx_log_t *log)
{
    ngx_http_chathistory_spool_write_t  *w = data;

    int      fd;
    ssize_t  n;
    size_t   done;

    fd = open(w->tmp, O_WRONLY|O_CREAT|O_TRUNC|O_CLOEXEC, 0600);
    if (fd == -1) {
        w->err = errno;
        return;
    }

    for (done = 0; done < w->len; done += n) {
        n = write(fd, w->data + done, w->len - done);
        if (n <= 0) {
            w->err = n == 0 ? EIO : errno;
            break;
        }
    }

    if (w->err == 0 && fsync(fd) == -1) {
        w->err = errno;
    }

    if (close(fd) == -1 && w->err == 0) {
        w->err = errno;
    }

    if (w->err == 0 && rename(w->tmp, w->path) == -1) {
        w->err = errno;
    }

    if (w->err != 0) {
        (void) unlink(w->tmp);
        return;
    }

    fd = open(w->dir, O_RDONLY|O_DIRECTORY|O_CLOEXEC);
    if (fd != -1) {
        (void) fsync(fd);
        (void) close(fd);
    }
}


static void
ngx_http_chathistory_spool_written(ngx_event_t *ev)
{
    ngx_http_chathistory_spool_write_t  *w = ev->data;

    ngx_http_chathistory_record_t  *rec;

    rec = w->rec;

    if (w->err) {
        ngx_log_error(NGX_LOG_CRIT, rec->log, w->err,
                      "chathistory: message %s lost: writing \"%s\" failed",
                      rec->id.text, w->path);
        ngx_http_chathistory_count(CH_STAT_MESSAGE_LOST);

    } else {
        ngx_http_chathistory_spool_spooled(rec);
    }

    ngx_http_chathistory_record_free(rec);
}


/*
 * Each message spooled is logged at info; at warn, a line a second says
 * how many were: a database that falls behind under a burst sends
 * thousands a second to the spool, and a line each would bury the log.
 */
static void
ngx_http_chathistory_spool_spooled(ngx_http_chathistory_record_t *rec)
{
    ngx_event_t  *ev;

    ngx_log_error(NGX_LOG_INFO, rec->log, 0,
                  "chathistory: message %s spooled until the database is "
                  "back", rec->id.text);
    ngx_http_chathistory_count(CH_STAT_MESSAGE_SPOOLED);

    if (ngx_http_chathistory_spool.unreported++ > 0
        && !ngx_http_chathistory_spool.inline_io)
    {
        return;
    }

    ev = &ngx_http_chathistory_spool.report_event;
    ngx_http_chathistory_timer_init(ev, ngx_http_chathistory_spool_report,
                                    rec->log, 1);

    if (ngx_http_chathistory_spool.inline_io) {
        /* the process is leaving: no timer will go off */
        ngx_http_chathistory_spool_report(ev);
        return;
    }

    ngx_add_timer(ev, 1000);
}


static void
ngx_http_chathistory_spool_report(ngx_event_t *ev)
{
    ngx_uint_t  n;

    n = ngx_http_chathistory_spool.unreported;
    ngx_http_chathistory_spool.unreported = 0;

    ngx_log_error(NGX_LOG_WARN, ev->log, 0,
                  "chathistory: %ui message%s spooled until the database is "
                  "back", n, n == 1 ? "" : "s");
}


/*
 * A record is through: a replayed one's file goes (or, when the database
 * rejected it, is kept aside as .rejected for a person to look at).
 */
void
ngx_http_chathistory_spool_done(ngx_http_chathistory_record_t *rec,
    ngx_uint_t stored)
{
    char  *to;

    if (rec->spool_file.len == 0) {
        ngx_http_chathistory_record_free(rec);
        return;
    }

    to = stored ? NULL
                : ngx_http_chathistory_spool_path(rec->pool,
                                                  &rec->conf->spool_path,
                                                  (char *) rec->id.text,
                                                  ".json.rejected");

    ngx_http_chathistory_spool_move(rec, (char *) rec->spool_file.data, to);
}


/* In the thread pool: rename a file, or unlink it; then free the record. */
void
ngx_http_chathistory_spool_move(ngx_http_chathistory_record_t *rec,
    const char *from, const char *to)
{
    ngx_thread_task_t                  *task;
    ngx_http_chathistory_spool_move_t  *m;

    task = ngx_thread_task_alloc(rec->pool,
                                 sizeof(ngx_http_chathistory_spool_move_t));
    if (task == NULL) {
        ngx_http_chathistory_record_free(rec);
        return;
    }

    m = task->ctx;
    m->rec = rec;
    m->from = (char *) from;
    m->to = (char *) to;

    if (from == NULL) {
        ngx_http_chathistory_record_free(rec);
        return;
    }

    task->handler = ngx_http_chathistory_spool_move_thread;
    task->event.handler = ngx_http_chathistory_spool_moved;
    task->event.data = m;

    if (ngx_http_chathistory_spool_task_run(rec->conf->thread_pool, task)
        != NGX_OK)
    {
        ngx_http_chathistory_record_free(rec);
    }
}


static ngx_int_t
ngx_http_chathistory_spool_task_run(ngx_thread_pool_t *tp,
    ngx_thread_task_t *task)
{
    if (!ngx_http_chathistory_spool.inline_io) {
        return ngx_thread_task_post(tp, task);
    }

    task->handler(task->ctx, ngx_cycle->log);
    task->event.handler(&task->event);

    return NGX_OK;
}


/*
 * The process is leaving with no turn of its event loop to spare: what it
 * spools from now on is written at once, in the process itself.
 */
void
ngx_http_chathistory_spool_exit(void)
{
    ngx_http_chathistory_spool.inline_io = 1;
}


static void
ngx_http_chathistory_spool_move_thread(void *data, ngx_log_t *log)
{
    ngx_http_chathistory_spool_move_t  *m = data;

    if ((m->to ? rename(m->from, m->to) : unlink(m->from)) == -1) {
        m->err = errno;
    }
}


static void
ngx_http_chathistory_spool_moved(ngx_event_t *ev)
{
    ngx_http_chathistory_spool_move_t  *m = ev->data;

    if (m->err) {
        ngx_log_error(NGX_LOG_CRIT, m->rec->log, m->err,
                      "chathistory: %s \"%s\" failed",
                      m->to ? "rename() of" : "unlink() of", m->from);
    }

    ngx_http_chathistory_record_free(m->rec);
}


/* Every worker process looks at the spool once a second. */
ngx_int_t
ngx_http_chathistory_spool_init(ngx_cycle_t *cycle,
    ngx_http_chathistory_main_conf_t *cmcf,
    ngx_http_chathistory_record_report_pt replayed)
{
    ngx_http_chathistory_spool_scan_t  *scan;

    ngx_http_chathistory_spool.task = ngx_thread_task_alloc(cycle->pool,
                                 sizeof(ngx_http_chathistory_spool_scan_t));
    if (ngx_http_chathistory_spool.task == NULL) {
        return NGX_ERROR;
    }

    scan = ngx_http_chathistory_spool.task->ctx;
    scan->dir = (char *) cmcf->spool_path.data;

    ngx_http_chathistory_spool.task->handler =
                                        ngx_http_chathistory_spool_scan_thread;
    ngx_http_chathistory_spool.task->event.handler =
                                        ngx_http_chathistory_spool_scanned;
    ngx_http_chathistory_spool.task->event.data = scan;

    ngx_http_chathistory_spool.conf = cmcf;
    ngx_http_chathistory_spool.replayed = replayed;

    ngx_http_chathistory_timer_init(&ngx_http_chathistory_spool.event,
                                    ngx_http_chathistory_spool_timer,
                                    cycle->log, 1);

    ngx_add_timer(&ngx_http_chathistory_spool.event, CH_SPOOL_INTERVAL);

    return NGX_OK;
}


static void
ngx_http_chathistory_spool_timer(ngx_event_t *ev)
{
    ngx_http_chathistory_spool_scan_t  *scan;

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    ngx_add_timer(ev, CH_SPOOL_INTERVAL);

    if (ngx_http_chathistory_spool.busy) {
        return;
    }

    scan = ngx_http_chathistory_spool.task->ctx;
    scan->pid = ngx_pid;
    scan->n = 0;

    if (ngx_thread_task_post(ngx_http_chathistory_spool.conf->thread_pool,
                             ngx_http_chathistory_spool.task)
        == NGX_OK)
    {
        ngx_http_chathistory_spool.busy = 1;
    }
}


/* In a thread: claim and read up to a batch of spooled records. */
static void
ngx_http_chathistory_spool_scan_thread(void *data, ngx_log_t *log)
{
    ngx_http_chathistory_spool_scan_t  *scan = data;

    DIR            *d;
    size_t          uuid_len;
    struct dirent  *de;

    scan->total = 0;

    d = opendir(scan->dir);
    if (d == NULL) {
        return;
    }

    /* read to the end: the spool's depth is a metric */
    while ((de = readdir(d)) != NULL) {
        if (!ngx_http_chathistory_spool_name(de->d_name, &uuid_len)) {
            continue;
        }

        scan->total++;

        if (scan->n < CH_SPOOL_BATCH) {
            (void) ngx_http_chathistory_spool_claim(scan, de->d_name);
        }
    }

    (void) closedir(d);
}


/*
 * "<id>.json" is free; "<id>.json.<pid>" is claimed by that process, and
 * taken over when it is older than a crashed worker's claim may be.
 */
static ngx_uint_t
ngx_http_chathistory_spool_claim(ngx_http_chathistory_spool_scan_t *scan,
    const char *name)
{
    char                                from[PATH_MAX], to[PATH_MAX];
    size_t                              uuid_len, len = 0;
    struct stat                         st;
    ngx_http_chathistory_spool_item_t  *item;

    if (!ngx_http_chathistory_spool_name(name, &uuid_len)) {
        return 0;
    }

    (void) snprintf(from, sizeof(from), "%s/%s", scan->dir, name);

    if (name[uuid_len + 5] == '.') {
        if (stat(from, &st) == -1 || time(NULL) - st.st_mtime < CH_SPOOL_STALE)
        {
            return 0;
        }
    }

    item = &scan->items[scan->n];
    (void) snprintf(item->name, sizeof(item->name), "%.*s.json.%d",
                    (int) uuid_len, name, (int) scan->pid);
    (void) snprintf(to, sizeof(to), "%s/%s", scan->dir, item->name);

    if (rename(from, to) == -1) {
        return 0;
    }

    /* a rename keeps the time; the claim's age counts from now */
    (void) utimes(to, NULL);

    item->data = ngx_http_chathistory_spool_read(to, &len);
    item->len = len;

    if (item->data == NULL) {
        (void) rename(to, from);
        return 0;
    }

    scan->n++;

    return 1;
}


static char *
ngx_http_chathistory_spool_read(const char *path, size_t *len)
{
    int          fd;
    char        *data;
    ssize_t      n;
    struct stat  st;

    fd = open(path, O_RDONLY|O_CLOEXEC);
    if (fd == -1) {
        return NULL;
    }

    data = NULL;

    if (fstat(fd, &st) == 0 && st.st_size > 0
        && st.st_size <= CH_SPOOL_MAX_FILE)
    {
        data = malloc(st.st_size);
    }

    if (data != NULL) {
        n = read(fd, data, st.st_size);

        if (n != st.st_size) {
            free(data);
            data = NULL;
        }

        *len = n;
    }

    (void) close(fd);

    return data;
}


static void
ngx_http_chathistory_spool_scanned(ngx_event_t *ev)
{
    ngx_http_chathistory_spool_scan_t  *scan = ev->data;

    ngx_uint_t  i;

    ngx_http_chathistory_spool.busy = 0;

    ngx_http_chathistory_spool.known = scan->total;
    ngx_http_chathistory_count_spool(scan->total);

    for (i = 0; i < scan->n; i++) {
        ngx_http_chathistory_spool_replay(scan, &scan->items[i]);
        free(scan->items[i].data);
        scan->items[i].data = NULL;
    }

    /* a full batch means more are waiting: look again soon, not in a
     * second */
    if (scan->n == CH_SPOOL_BATCH
        && ngx_http_chathistory_spool.event.timer_set)
    {
        ngx_del_timer(&ngx_http_chathistory_spool.event);
        ngx_add_timer(&ngx_http_chathistory_spool.event, 10);
    }

    scan->n = 0;
}


/* A claimed record goes to the database again. */
static void
ngx_http_chathistory_spool_replay(ngx_http_chathistory_spool_scan_t *scan,
    ngx_http_chathistory_spool_item_t *item)
{
    cJSON                          *json, *id, *session, *org;
    ngx_http_chathistory_record_t  *rec;

    rec = ngx_http_chathistory_record_create(ngx_http_chathistory_spool.conf);
    if (rec == NULL) {
        return;
    }

    rec->spool_file.data = (u_char *) ngx_http_chathistory_spool_path(
                                 rec->pool, &rec->conf->spool_path,
                                 item->name, "");
    rec->spool_file.len = rec->spool_file.data
                          ? ngx_strlen(rec->spool_file.data) : 0;

    json = cJSON_ParseWithLength(item->data, item->len);
    id = cJSON_GetObjectItemCaseSensitive(json, "id");
    session = cJSON_GetObjectItemCaseSensitive(json, "session_id");
    org = cJSON_GetObjectItemCaseSensitive(json, "org_id");

    if (rec->spool_file.len == 0
        || !cJSON_IsString(id) || !cJSON_IsString(session)
        || ngx_http_chathistory_uuid_parse(&rec->id, (u_char *) id->valuestring,
                                       ngx_strlen(id->valuestring)) != NGX_OK
        || ngx_http_chathistory_uuid_parse(&rec->session_id,
                                       (u_char *) session->valuestring,
                                       ngx_strlen(session->valuestring))
           != NGX_OK
        || (org != NULL
            && (!cJSON_IsString(org)
                || ngx_http_chathistory_uuid_parse(&rec->org_id,
                                       (u_char *) org->valuestring,
                                       ngx_strlen(org->valuestring))
                   != NGX_OK))
        || ngx_http_chathistory_record_fields(rec, json) != NGX_OK
        || ngx_http_chathistory_record_audio_fields(rec, json) != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ERR, rec->log, 0,
                      "chathistory: spooled record \"%s\" is damaged, "
                      "kept aside", item->name);
        cJSON_Delete(json);

        if (rec->spool_file.len == 0) {
            ngx_http_chathistory_record_free(rec);
            return;
        }

        ngx_http_chathistory_spool_done(rec, 0);
        return;
    }

    cJSON_Delete(json);

    ngx_log_error(NGX_LOG_INFO, rec->log, 0,
                  "chathistory: replaying spooled message %s", rec->id.text);
    ngx_http_chathistory_count(CH_STAT_MESSAGE_REPLAYED);

    ngx_http_chathistory_spool.replayed(rec, CH_RECORD_REPLAYED);
}


/* "<uuid>.json" or "<uuid>.json.<digits>"; *uuid_len gets 36. */
static ngx_uint_t
ngx_http_chathistory_spool_name(const char *name, size_t *uuid_len)
{
    size_t                       len;
    const char                  *p;
    ngx_http_chathistory_uuid_t  id;

    len = NGX_HTTP_CHATHISTORY_UUID_LEN;

    if (ngx_strlen(name) < len + 5
        || ngx_http_chathistory_uuid_parse(&id, (u_char *) name, len) != NGX_OK
        || ngx_strncmp(name + len, ".json", 5) != 0)
    {
        return 0;
    }

    p = name + len + 5;

    if (*p == '.') {
        for (p++; *p >= '0' && *p <= '9'; p++) { /* void */ }

        if (p == name + len + 6) {
            return 0;
        }
    }

    if (*p != '\0') {
        return 0;
    }

    if (uuid_len) {
        *uuid_len = len;
    }

    return 1;
}


static char *
ngx_http_chathistory_spool_path(ngx_pool_t *pool, ngx_str_t *dir,
    const char *name, const char *suffix)
{
    u_char  *p;

    p = ngx_pnalloc(pool, dir->len + ngx_strlen(name) + ngx_strlen(suffix)
                          + 2);
    if (p == NULL) {
        return NULL;
    }

    *ngx_sprintf(p, "%V/%s%s", dir, name, suffix) = '\0';

    return (char *) p;
}
