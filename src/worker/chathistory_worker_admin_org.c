
/*
 * The org command: create, list and set the retention of organizations.
 */


#include <stdlib.h>
#include <string.h>

#include "chathistory_worker.h"


static int chw_org_create(PGconn *conn, int argc, char **argv);
static int chw_org_list(PGconn *conn, int argc, char **argv);
static int chw_org_set_retention(PGconn *conn, int argc, char **argv);
static int chw_org_days(const char *s, const char **days);
static int chw_org_print(PGconn *conn, const char *sql, int nparams,
    const char *const *params);


#define CHW_ORG_COLUMNS                                                       \
    "id, name, coalesce(retention_days::text, 'forever'), "                   \
    "to_char(created_at AT TIME ZONE 'UTC', "                                 \
    "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"


static const char  chw_org_usage[] =
    "usage: " CHW_NAME " org create NAME [--retention-days N]\n"
    "       " CHW_NAME " org list\n"
    "       " CHW_NAME " org set-retention NAME|ID N|null [--apply-existing]\n";


static const chw_admin_cmd_t  chw_org_cmds[] = {
    { "create", chw_org_create },
    { "list", chw_org_list },
    { "set-retention", chw_org_set_retention },
    { NULL, NULL }
};


int
chw_admin_org(chw_config_t *cf, int argc, char **argv)
{
    return chw_admin_dispatch(cf, argc, argv, "org", chw_org_cmds,
                              chw_org_usage);
}


static int
chw_org_create(PGconn *conn, int argc, char **argv)
{
    const char  *params[2];

    params[1] = NULL;

    if (argc == 3 && strcmp(argv[1], "--retention-days") == 0) {
        if (chw_org_days(argv[2], &params[1]) != CHW_OK) {
            return CHW_EXIT_USAGE;
        }

    } else if (argc != 1) {
        fputs(chw_org_usage, stderr);
        return CHW_EXIT_USAGE;
    }

    if (chw_admin_name("org create", "organization", argv[0]) != CHW_OK) {
        return CHW_EXIT_USAGE;
    }

    params[0] = argv[0];

    return chw_org_print(conn, "INSERT INTO organizations "
                         "(name, retention_days) VALUES ($1, $2::int) "
                         "RETURNING " CHW_ORG_COLUMNS, 2, params);
}


static int
chw_org_list(PGconn *conn, int argc, char **argv)
{
    if (argc != 0) {
        fputs(chw_org_usage, stderr);
        return CHW_EXIT_USAGE;
    }

    return chw_org_print(conn, "SELECT " CHW_ORG_COLUMNS
                         " FROM organizations ORDER BY name", 0, NULL);
}


/*
 * New sessions expire after the new retention; --apply-existing also
 * recomputes expires_at of the organization's existing sessions.
 */
static int
chw_org_set_retention(PGconn *conn, int argc, char **argv)
{
    int          rc;
    const char  *params[2];

    if (argc == 3 && strcmp(argv[2], "--apply-existing") != 0) {
        argc = 0;
    }

    if ((argc != 2 && argc != 3)
        || chw_org_days(argv[1], &params[1]) != CHW_OK)
    {
        fputs(chw_org_usage, stderr);
        return CHW_EXIT_USAGE;
    }

    params[0] = argv[0];

    if (chw_pg_command(conn, "BEGIN", 0, NULL) != CHW_OK) {
        return CHW_EXIT_FAILURE;
    }

    rc = chw_org_print(conn, "UPDATE organizations SET retention_days = "
                       "$2::int WHERE id::text = lower($1) OR name = $1 "
                       "RETURNING " CHW_ORG_COLUMNS, 2, params);

    if (rc == CHW_EXIT_OK && argc == 3) {
        rc = chw_pg_command(conn, "UPDATE sessions s SET expires_at = "
                 "s.created_at + make_interval(days => o.retention_days) "
                 "FROM organizations o WHERE s.org_id = o.id "
                 "AND (o.id::text = lower($1) OR o.name = $1)", 1, params)
             == CHW_OK ? CHW_EXIT_OK : CHW_EXIT_FAILURE;
    }

    if (chw_pg_command(conn, rc == CHW_EXIT_OK ? "COMMIT" : "ROLLBACK", 0,
                       NULL) != CHW_OK)
    {
        rc = CHW_EXIT_FAILURE;
    }

    return rc;
}


/* 1-3650, or "null" (keep forever) as NULL */
static int
chw_org_days(const char *s, const char **days)
{
    char  *end;
    long   n;

    if (strcmp(s, "null") == 0 || strcmp(s, "forever") == 0) {
        *days = NULL;
        return CHW_OK;
    }

    n = strtol(s, &end, 10);

    if (end == s || *end != '\0' || n < 1 || n > 3650) {
        fprintf(stderr, CHW_NAME " org: invalid retention \"%s\" "
                "(expected 1 to 3650 days, or null)\n", s);
        return CHW_ERROR;
    }

    *days = s;

    return CHW_OK;
}


/* runs the statement and prints its rows tab-separated; none is an error */
static int
chw_org_print(PGconn *conn, const char *sql, int nparams,
    const char *const *params)
{
    int        i, j;
    PGresult  *res;

    res = chw_pg_exec(conn, sql, nparams, params);

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        chw_pg_log_error(conn, res, "organization command failed", NULL,
                         NULL);
        PQclear(res);
        return CHW_EXIT_FAILURE;
    }

    for (i = 0; i < PQntuples(res); i++) {
        for (j = 0; j < PQnfields(res); j++) {
            printf("%s%s", j ? "\t" : "", PQgetvalue(res, i, j));
        }

        putchar('\n');
    }

    if (PQntuples(res) == 0 && nparams > 0) {
        chw_log(CHW_LOG_ERROR, "no such organization", "org", params[0],
                NULL);
        PQclear(res);
        return CHW_EXIT_FAILURE;
    }

    PQclear(res);
    fflush(stdout);

    return CHW_EXIT_OK;
}
