-- Extensions and helper functions every later migration relies on.

-- pgvector: the embedding column and its HNSW index. Creating it needs a
-- superuser unless a DBA has already created it in this database.
CREATE EXTENSION IF NOT EXISTS vector;

-- A UUIDv7 (RFC 9562) for rows the database creates itself: 48 bits of Unix
-- milliseconds, version 7, the variant and random bits of gen_random_uuid().
-- The module and the worker normally give ids; this is only the default.
CREATE FUNCTION chathistory_uuidv7() RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE
AS $$
    SELECT encode(
        set_bit(
            set_bit(
                overlay(uuid_send(gen_random_uuid())
                        PLACING substring(int8send(floor(extract(epoch
                            FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                        FROM 1 FOR 6),
                52, 1),
            53, 1),
        'hex')::uuid
$$;

COMMENT ON FUNCTION chathistory_uuidv7() IS
    'UUIDv7 (RFC 9562): 48-bit Unix milliseconds, version 7, random rest';
