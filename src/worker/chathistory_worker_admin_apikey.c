
/*
 * The apikey command: keys for the public /v1 gateway. A key is printed
 * once, at creation; the database keeps only its SHA-256.
 */


#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "chathistory_sha256.h"
#include "chathistory_worker.h"


#define CHW_KEY_PREFIX   "chk_"
#define CHW_KEY_RANDOM   32
/* "chk_" and 43 base64url characters */
#define CHW_KEY_LEN      (sizeof(CHW_KEY_PREFIX) - 1 + 43)


static int chw_apikey_create(PGconn *conn, int argc, char **argv);
static int chw_apikey_list(PGconn *conn, int argc, char **argv);
static int chw_apikey_revoke(PGconn *conn, int argc, char **argv);
static const char *chw_apikey_option(int argc, char **argv,
    const char *name);
static int chw_apikey_generate(char *key, char *hash_hex);
static void chw_base64url(const unsigned char *in, size_t len, char *out);
static PGresult *chw_apikey_exec(PGconn *conn, const char *sql,
    int nparams, const char *const *params);
static int chw_apikey_print(PGresult *res);


static const char  chw_apikey_usage[] =
    "usage: " CHW_NAME " apikey create --org NAME|ID --name KEYNAME\n"
    "       " CHW_NAME " apikey list [--org NAME|ID]\n"
    "       " CHW_NAME " apikey revoke ID\n";


static const chw_admin_cmd_t  chw_apikey_cmds[] = {
    { "create", chw_apikey_create },
    { "list", chw_apikey_list },
    { "revoke", chw_apikey_revoke },
    { NULL, NULL }
};


int
chw_admin_apikey(chw_config_t *cf, int argc, char **argv)
{
    return chw_admin_dispatch(cf, argc, argv, "apikey", chw_apikey_cmds,
                              chw_apikey_usage);
}


static int
chw_apikey_create(PGconn *conn, int argc, char **argv)
{
    char         key[CHW_KEY_LEN + 1], hash[2 * CHATHISTORY_SHA256_LEN + 1];
    PGresult    *res;
    const char  *params[3];

    params[0] = chw_apikey_option(argc, argv, "--org");
    params[1] = chw_apikey_option(argc, argv, "--name");

    if (argc != 4 || params[0] == NULL || params[1] == NULL) {
        fputs(chw_apikey_usage, stderr);
        return CHW_EXIT_USAGE;
    }

    if (chw_admin_name("apikey create", "key", params[1]) != CHW_OK) {
        return CHW_EXIT_USAGE;
    }

    if (chw_apikey_generate(key, hash) != CHW_OK) {
        return CHW_EXIT_FAILURE;
    }

    params[2] = hash;

    res = chw_apikey_exec(conn, "INSERT INTO api_keys "
              "(org_id, name, key_hash) "
              "SELECT id, $2, decode($3, 'hex') FROM organizations "
              "WHERE id::text = lower($1) OR name = $1 "
              "RETURNING id, org_id, name", 3, params);
    if (res == NULL) {
        return CHW_EXIT_FAILURE;
    }

    if (PQntuples(res) == 0) {
        chw_log(CHW_LOG_ERROR, "no such organization", "org", params[0],
                NULL);
        PQclear(res);
        return CHW_EXIT_FAILURE;
    }

    chw_log(CHW_LOG_INFO, "API key created; it is shown only now",
            "id", PQgetvalue(res, 0, 0), "org", PQgetvalue(res, 0, 1),
            "name", PQgetvalue(res, 0, 2), NULL);
    PQclear(res);

    printf("%s\n", key);
    fflush(stdout);
    memset(key, 0, sizeof(key));

    return CHW_EXIT_OK;
}


static int
chw_apikey_list(PGconn *conn, int argc, char **argv)
{
    PGresult    *res;
    const char  *params[1];

    params[0] = chw_apikey_option(argc, argv, "--org");

    if (argc != (params[0] != NULL ? 2 : 0)) {
        fputs(chw_apikey_usage, stderr);
        return CHW_EXIT_USAGE;
    }

    /* an organization without keys lists nothing; an unknown one fails */
    if (params[0] != NULL) {
        res = chw_apikey_exec(conn, "SELECT id FROM organizations "
                              "WHERE id::text = lower($1) OR name = $1",
                              1, params);
        if (res == NULL) {
            return CHW_EXIT_FAILURE;
        }

        if (PQntuples(res) == 0) {
            chw_log(CHW_LOG_ERROR, "no such organization", "org", params[0],
                    NULL);
            PQclear(res);
            return CHW_EXIT_FAILURE;
        }

        PQclear(res);
    }

    res = chw_apikey_exec(conn, "SELECT k.id, o.name, k.name, "
        "to_char(k.created_at AT TIME ZONE 'UTC', "
        "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
        "CASE WHEN k.revoked_at IS NOT NULL THEN 'revoked' ELSE 'active' END, "
        "coalesce(to_char(k.last_used_at AT TIME ZONE 'UTC', "
        "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), 'never') "
        "FROM api_keys k JOIN organizations o ON o.id = k.org_id "
        "WHERE $1::text IS NULL OR o.id::text = lower($1) OR o.name = $1 "
        "ORDER BY o.name, k.created_at", 1, params);
    if (res == NULL) {
        return CHW_EXIT_FAILURE;
    }

    chw_apikey_print(res);

    return CHW_EXIT_OK;
}


static int
chw_apikey_revoke(PGconn *conn, int argc, char **argv)
{
    PGresult    *res;
    const char  *params[1];

    if (argc != 1 || !chw_uuid_valid(argv[0])) {
        fputs(chw_apikey_usage, stderr);
        return CHW_EXIT_USAGE;
    }

    params[0] = argv[0];

    res = chw_apikey_exec(conn, "UPDATE api_keys SET revoked_at = "
              "coalesce(revoked_at, now()) WHERE id = $1::uuid "
              "RETURNING id, name, 'revoked'", 1, params);
    if (res == NULL) {
        return CHW_EXIT_FAILURE;
    }

    if (chw_apikey_print(res) == 0) {
        chw_log(CHW_LOG_ERROR, "no such API key", "id", argv[0], NULL);
        return CHW_EXIT_FAILURE;
    }

    return CHW_EXIT_OK;
}


/* the value after name in argv, or NULL */
static const char *
chw_apikey_option(int argc, char **argv, const char *name)
{
    int  i;

    for (i = 0; i + 1 < argc; i++) {
        if (strcmp(argv[i], name) == 0) {
            return argv[i + 1];
        }
    }

    return NULL;
}


/* chk_ + base64url of 32 random bytes, and its SHA-256 in hex */
static int
chw_apikey_generate(char *key, char *hash_hex)
{
    size_t         i;
    unsigned char  rnd[CHW_KEY_RANDOM], digest[CHATHISTORY_SHA256_LEN];

    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t) sizeof(rnd)) {
        chw_log(CHW_LOG_ERROR, "getrandom() failed", NULL);
        return CHW_ERROR;
    }

    memcpy(key, CHW_KEY_PREFIX, sizeof(CHW_KEY_PREFIX) - 1);
    chw_base64url(rnd, sizeof(rnd), key + sizeof(CHW_KEY_PREFIX) - 1);
    memset(rnd, 0, sizeof(rnd));

    if (chathistory_sha256(key, strlen(key), digest) != 0) {
        chw_log(CHW_LOG_ERROR, "SHA-256 failed in libcrypto", NULL);
        return CHW_ERROR;
    }

    for (i = 0; i < CHATHISTORY_SHA256_LEN; i++) {
        sprintf(hash_hex + 2 * i, "%02x", digest[i]);
    }

    return CHW_OK;
}


/* unpadded base64url; out has room for 4 * ceil(len / 3) + 1 */
static void
chw_base64url(const unsigned char *in, size_t len, char *out)
{
    size_t             i;
    uint32_t           v;
    static const char  a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                             "abcdefghijklmnopqrstuvwxyz0123456789-_";

    for (i = 0; i + 2 < len; i += 3) {
        v = (uint32_t) in[i] << 16 | (uint32_t) in[i + 1] << 8 | in[i + 2];
        *out++ = a[v >> 18];
        *out++ = a[(v >> 12) & 63];
        *out++ = a[(v >> 6) & 63];
        *out++ = a[v & 63];
    }

    if (len - i == 1) {
        v = (uint32_t) in[i] << 16;
        *out++ = a[v >> 18];
        *out++ = a[(v >> 12) & 63];

    } else if (len - i == 2) {
        v = (uint32_t) in[i] << 16 | (uint32_t) in[i + 1] << 8;
        *out++ = a[v >> 18];
        *out++ = a[(v >> 12) & 63];
        *out++ = a[(v >> 6) & 63];
    }

    *out = '\0';
}


/* runs the statement; NULL (logged) on failure */
static PGresult *
chw_apikey_exec(PGconn *conn, const char *sql, int nparams,
    const char *const *params)
{
    PGresult  *res;

    res = chw_pg_exec(conn, sql, nparams, params);

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        chw_pg_log_error(conn, res, "API key command failed", NULL, NULL);
        PQclear(res);
        return NULL;
    }

    return res;
}


/* the rows, tab-separated, on stdout; then clears res */
static int
chw_apikey_print(PGresult *res)
{
    int  i, j, n;

    n = PQntuples(res);

    for (i = 0; i < n; i++) {
        for (j = 0; j < PQnfields(res); j++) {
            printf("%s%s", j ? "\t" : "", PQgetvalue(res, i, j));
        }

        putchar('\n');
    }

    PQclear(res);
    fflush(stdout);

    return n;
}
