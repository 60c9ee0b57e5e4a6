
/*
 * The reembed command: queues embed_message jobs for the messages whose
 * embedding_model is not the configured one (after a model change, or for
 * embeddings that failed), unless such a job is already waiting.
 */


#include <stdlib.h>
#include <string.h>

#include "chathistory_hash_embed.h"
#include "chathistory_worker.h"


static const char  chw_reembed_sql[] =
    "INSERT INTO jobs (kind, payload) "
    "SELECT 'embed_message', jsonb_build_object('message_id', m.id) "
    "FROM messages m "
    "WHERE m.embedding_model IS DISTINCT FROM $1 "
    "AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.kind = 'embed_message' "
    "AND j.status IN ('queued', 'running') "
    "AND j.payload->>'message_id' = m.id::text) "
    "ORDER BY m.created_at";


int
chw_reembed(chw_config_t *cf, int argc, char **argv)
{
    PGconn      *conn;
    PGresult    *res;
    const char  *params[1];

    if (argc != 0) {
        fprintf(stderr, CHW_NAME " reembed: unknown option \"%s\"\n",
                argv[0]);
        return CHW_EXIT_USAGE;
    }

    if (strcmp(cf->embedding_provider, "hash") == 0) {
        params[0] = CHATHISTORY_HASH_MODEL;

    } else if (cf->embedding_model != NULL) {
        params[0] = cf->embedding_model;

    } else if (strcmp(cf->embedding_provider, "ollama") == 0) {
        params[0] = "nomic-embed-text";

    } else {
        fprintf(stderr, CHW_NAME " reembed: embedding_model is not set\n");
        return CHW_EXIT_USAGE;
    }

    conn = chw_admin_connect(cf, "reembed");
    if (conn == NULL) {
        return cf->database_url == NULL ? CHW_EXIT_USAGE : CHW_EXIT_FAILURE;
    }

    res = chw_pg_exec(conn, chw_reembed_sql, 1, params);

    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        chw_pg_log_error(conn, res, "cannot queue reembedding", NULL, NULL);
        PQclear(res);
        PQfinish(conn);
        return CHW_EXIT_FAILURE;
    }

    chw_log(CHW_LOG_INFO, "reembedding queued", "model", params[0],
            "jobs", PQcmdTuples(res), NULL);
    printf("%s\n", PQcmdTuples(res));

    PQclear(res);
    PQfinish(conn);

    return CHW_EXIT_OK;
}
