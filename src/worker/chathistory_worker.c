
/*
 * chathistory-worker: settings, then one command from the table below.
 */


#include <string.h>

#include "chathistory_worker.h"


static chw_command_t *chw_find_command(const char *name);
static int chw_is(const char *arg, const char *a, const char *b);


static chw_command_t  chw_commands[] = {

    { "migrate", chw_migrate,
      "apply pending migrations (--status: list applied and pending)" },

    { "run", chw_run,
      "the daemon: do jobs, cleanup, stats (--drain: exit when idle)" },

    { "cleanup", chw_cleanup,
      "one retention cleanup pass now, for cron (--once)" },

    { "reembed", chw_reembed,
      "queue embeddings of messages made by another model" },

    { "org", chw_admin_org,
      "create NAME [--retention-days N] | list | set-retention ORG N|null" },

    { "apikey", chw_admin_apikey,
      "create --org ORG --name NAME | list [--org ORG] | revoke ID" },

    { NULL, NULL, NULL }
};


int
main(int argc, char **argv)
{
    int             n;
    chw_config_t    cf;
    chw_command_t  *cmd;

    if (chw_config_parse(&cf, argc, argv, &n) != CHW_OK) {
        chw_usage(stderr);
        return CHW_EXIT_USAGE;
    }

    if (n == 0) {
        fprintf(stderr, CHW_NAME ": no command given\n");
        chw_usage(stderr);
        return CHW_EXIT_USAGE;
    }

    if (chw_is(argv[0], "--help", "-h")) {
        chw_usage(stdout);
        return CHW_EXIT_OK;
    }

    if (chw_is(argv[0], "--version", "-V")) {
        printf(CHW_NAME " " CHW_VERSION "\n");
        return CHW_EXIT_OK;
    }

    cmd = chw_find_command(argv[0]);
    if (cmd == NULL) {
        fprintf(stderr, CHW_NAME ": unknown %s \"%s\"\n",
                argv[0][0] == '-' ? "option" : "command", argv[0]);
        chw_usage(stderr);
        return CHW_EXIT_USAGE;
    }

    return cmd->run(&cf, n - 1, argv + 1);
}


void
chw_usage(FILE *out)
{
    chw_command_t  *cmd;

    fprintf(out, "usage: " CHW_NAME " [settings] <command> [options]\n"
                 "       " CHW_NAME " --help | --version\n\n"
                 "commands:\n");

    for (cmd = chw_commands; cmd->name != NULL; cmd++) {
        fprintf(out, "  %-12s %s\n", cmd->name, cmd->summary);
    }

    fprintf(out, "\n");
    chw_config_usage(out);
    fprintf(out, "\nexit status: 0 success, 1 failure, 2 usage error\n");
}


static chw_command_t *
chw_find_command(const char *name)
{
    chw_command_t  *cmd;

    for (cmd = chw_commands; cmd->name != NULL; cmd++) {
        if (strcmp(cmd->name, name) == 0) {
            return cmd;
        }
    }

    return NULL;
}


static int
chw_is(const char *arg, const char *a, const char *b)
{
    return strcmp(arg, a) == 0 || strcmp(arg, b) == 0;
}
