
/*
 * Settings: a flag, else an environment variable, else a default. The names
 * are those of the nginx directives (database_url, audio_storage_path, ...).
 */


#include <stdlib.h>
#include <string.h>

#include "chathistory_worker.h"


typedef struct {
    const char  *flag;
    const char  *env;
    size_t       offset;
    const char  *dflt;
    const char  *help;
} chw_setting_t;


static chw_setting_t *chw_config_find(const char *arg, size_t len);
static int chw_config_flag(chw_config_t *cf, int argc, char **argv, int *i);
static void chw_config_set(chw_config_t *cf, chw_setting_t *s,
    const char *value);
static int chw_config_check(chw_config_t *cf);
static int chw_config_numbers(chw_config_t *cf);


#define chw_setting(name)  offsetof(chw_config_t, name)

static chw_setting_t  chw_settings[] = {

    { "--database-url", "CHATHISTORY_DATABASE_URL",
      chw_setting(database_url), NULL,
      "libpq conninfo or postgresql:// URL" },

    { "--database-timeout", "CHATHISTORY_DATABASE_TIMEOUT",
      chw_setting(database_timeout_s), "30",
      "seconds an answer of PostgreSQL is waited for; 0: no bound" },

    { "--migrations-dir", "CHATHISTORY_MIGRATIONS_DIR",
      chw_setting(migrations_dir), NULL,
      "default: ./" CHW_DEFAULT_MIGRATIONS_DIR ", else "
      CHW_SYSTEM_MIGRATIONS_DIR },

    { "--audio-storage-path", "CHATHISTORY_AUDIO_STORAGE_PATH",
      chw_setting(audio_storage_path), NULL,
      "where nginx stores the audio files" },

    { "--embedding-provider", "CHATHISTORY_EMBEDDING_PROVIDER",
      chw_setting(embedding_provider), "hash",
      "hash (default), ollama or openai" },

    { "--embedding-model", "CHATHISTORY_EMBEDDING_MODEL",
      chw_setting(embedding_model), NULL,
      "model name sent to the embedding server" },

    { "--embedding-url", "CHATHISTORY_EMBEDDING_URL",
      chw_setting(embedding_url), NULL,
      "base URL of the embedding server" },

    { "--log-file", "CHATHISTORY_LOG_FILE",
      chw_setting(log_file), NULL,
      "append the log to this file (reopened on SIGHUP); default: stderr" },

    { "--embedding-max-chars", "CHATHISTORY_EMBEDDING_MAX_CHARS",
      chw_setting(embedding_max_chars_s), "8000",
      "texts are cut to this many bytes, at a UTF-8 boundary" },

    { "--embedding-timeout", "CHATHISTORY_EMBEDDING_TIMEOUT",
      chw_setting(embedding_timeout_s), "30",
      "seconds an embedding request may take" },

    { "--batch-size", "CHATHISTORY_BATCH_SIZE",
      chw_setting(batch_size_s), "32",
      "jobs claimed at a time (one embedding request per batch)" },

    { "--job-lease", "CHATHISTORY_JOB_LEASE",
      chw_setting(job_lease_s), "300",
      "seconds a claimed job stays ours before another worker retakes it" },

    { "--poll-interval", "CHATHISTORY_POLL_INTERVAL",
      chw_setting(poll_interval_s), "10",
      "seconds between looks at the queue when no NOTIFY comes" },

    { "--retry-base", "CHATHISTORY_RETRY_BASE",
      chw_setting(retry_base_s), "5",
      "seconds before the first retry; doubled each attempt, jittered" },

    { "--retry-max", "CHATHISTORY_RETRY_MAX",
      chw_setting(retry_max_s), "3600",
      "seconds a retry is delayed at most" },

    { "--cleanup-interval", "CHATHISTORY_CLEANUP_INTERVAL",
      chw_setting(cleanup_interval_s), "3600",
      "seconds between retention cleanups in run; 0: never" },

    { "--stats-interval", "CHATHISTORY_STATS_INTERVAL",
      chw_setting(stats_interval_s), "60",
      "seconds between stats log lines in run; 0: never" },

    { "--jobs-keep-days", "CHATHISTORY_JOBS_KEEP_DAYS",
      chw_setting(jobs_keep_days_s), "7",
      "days done jobs are kept before cleanup deletes them" },

    { "--orphan-age", "CHATHISTORY_ORPHAN_AGE",
      chw_setting(orphan_age_s), "600",
      "seconds an audio directory without a session is left alone" },

    { NULL, NULL, 0, NULL, NULL }
};


typedef struct {
    const char  *name;
    size_t       str;
    size_t       num;
    double       min;
    double       max;
} chw_number_t;


#define chw_number(name)  chw_setting(name##_s), chw_setting(name)

static chw_number_t  chw_numbers[] = {
    { "database_timeout", chw_number(database_timeout), 0, 86400 },
    { "embedding_max_chars", chw_number(embedding_max_chars), 16, 1e7 },
    { "embedding_timeout", chw_number(embedding_timeout), 0.01, 3600 },
    { "batch_size", chw_number(batch_size), 1, 1000 },
    { "job_lease", chw_number(job_lease), 0.1, 86400 },
    { "poll_interval", chw_number(poll_interval), 0.01, 3600 },
    { "retry_base", chw_number(retry_base), 0, 86400 },
    { "retry_max", chw_number(retry_max), 0, 86400 * 7 },
    { "cleanup_interval", chw_number(cleanup_interval), 0, 86400 * 7 },
    { "stats_interval", chw_number(stats_interval), 0, 86400 },
    { "jobs_keep_days", chw_number(jobs_keep_days), 0, 3650 },
    { "orphan_age", chw_number(orphan_age), 0, 86400 * 30 },
    { NULL, 0, 0, 0, 0 }
};


static const char  *chw_providers[] = { "hash", "ollama", "openai", NULL };


/*
 * Reads the environment, then the setting flags ("--name value" or
 * "--name=value") anywhere in argv; what is left (the command and its own
 * options) is moved to argv[0 .. *nrest - 1].
 */
int
chw_config_parse(chw_config_t *cf, int argc, char **argv, int *nrest)
{
    int             i, n;
    const char     *value;
    chw_setting_t  *s;

    memset(cf, 0, sizeof(chw_config_t));

    for (s = chw_settings; s->flag != NULL; s++) {
        value = getenv(s->env);
        chw_config_set(cf, s, value);
    }

    n = 0;

    for (i = 1; i < argc; i++) {

        switch (chw_config_flag(cf, argc, argv, &i)) {
        case CHW_OK:
            break;
        case CHW_ERROR:
            return CHW_ERROR;
        default:
            argv[n++] = argv[i];
        }
    }

    *nrest = n;

    return chw_config_check(cf);
}


void
chw_config_usage(FILE *out)
{
    chw_setting_t  *s;

    fprintf(out, "settings (a flag wins over its environment variable):\n");

    for (s = chw_settings; s->flag != NULL; s++) {
        fprintf(out, "  %-28s %s\n      %s\n",
                s->flag, s->env, s->help);
    }
}


/* CHW_OK: a setting, consumed; CHW_ERROR: bad; 1: not a setting */
static int
chw_config_flag(chw_config_t *cf, int argc, char **argv, int *i)
{
    char           *arg, *eq;
    chw_setting_t  *s;

    arg = argv[*i];
    eq = strchr(arg, '=');

    s = chw_config_find(arg, eq != NULL ? (size_t) (eq - arg) : strlen(arg));
    if (s == NULL) {
        return 1;
    }

    if (eq != NULL) {
        chw_config_set(cf, s, eq + 1);
        return CHW_OK;
    }

    if (*i + 1 >= argc) {
        fprintf(stderr, CHW_NAME ": option \"%s\" requires a value\n", arg);
        return CHW_ERROR;
    }

    chw_config_set(cf, s, argv[++*i]);

    return CHW_OK;
}


static chw_setting_t *
chw_config_find(const char *arg, size_t len)
{
    chw_setting_t  *s;

    for (s = chw_settings; s->flag != NULL; s++) {
        if (strlen(s->flag) == len && strncmp(s->flag, arg, len) == 0) {
            return s;
        }
    }

    return NULL;
}


/* an empty value, as an unset one, means the default */
static void
chw_config_set(chw_config_t *cf, chw_setting_t *s, const char *value)
{
    if (value == NULL || *value == '\0') {
        value = s->dflt;
    }

    *(const char **) ((char *) cf + s->offset) = value;
}


static int
chw_config_check(chw_config_t *cf)
{
    const char  **p;

    for (p = chw_providers; *p != NULL; p++) {
        if (strcmp(*p, cf->embedding_provider) == 0) {
            return chw_config_numbers(cf);
        }
    }

    fprintf(stderr, CHW_NAME ": invalid embedding_provider \"%s\" "
            "(expected hash, ollama or openai)\n", cf->embedding_provider);

    return CHW_ERROR;
}


/* every number setting: a decimal within its bounds */
static int
chw_config_numbers(chw_config_t *cf)
{
    char          *end;
    double         v;
    const char    *str;
    chw_number_t  *n;

    for (n = chw_numbers; n->name != NULL; n++) {
        str = *(const char **) ((char *) cf + n->str);

        v = strtod(str, &end);

        if (end == str || *end != '\0' || !(v >= n->min && v <= n->max)) {
            fprintf(stderr, CHW_NAME ": invalid %s \"%s\" "
                    "(expected a number from %g to %g)\n",
                    n->name, str, n->min, n->max);
            return CHW_ERROR;
        }

        *(double *) ((char *) cf + n->num) = v;
    }

    return CHW_OK;
}
