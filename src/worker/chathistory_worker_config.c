
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


#define chw_setting(name)  offsetof(chw_config_t, name)

static chw_setting_t  chw_settings[] = {

    { "--database-url", "CHATHISTORY_DATABASE_URL",
      chw_setting(database_url), NULL,
      "libpq conninfo or postgresql:// URL" },

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

    { NULL, NULL, 0, NULL, NULL }
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
            return CHW_OK;
        }
    }

    fprintf(stderr, CHW_NAME ": invalid embedding_provider \"%s\" "
            "(expected hash, ollama or openai)\n", cf->embedding_provider);

    return CHW_ERROR;
}
