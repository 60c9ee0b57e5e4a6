-- Organizations (tenants) and the API keys of the public /v1 gateway.

CREATE TABLE organizations (
    id              uuid        PRIMARY KEY DEFAULT chathistory_uuidv7(),
    name            text        NOT NULL UNIQUE,
    -- NULL keeps sessions forever
    retention_days  integer     CHECK (retention_days BETWEEN 1 AND 3650),
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- /api/* uses this organization when the request names none; the module
-- finds it by name, so its id may differ between databases.
INSERT INTO organizations (name) VALUES ('default');

CREATE TABLE api_keys (
    id            uuid        PRIMARY KEY DEFAULT chathistory_uuidv7(),
    org_id        uuid        NOT NULL
                              REFERENCES organizations ON DELETE CASCADE,
    name          text        NOT NULL,
    -- SHA-256 of the key; the key itself is never stored
    key_hash      bytea       NOT NULL UNIQUE
                              CHECK (octet_length(key_hash) = 32),
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    revoked_at    timestamptz
);

CREATE INDEX api_keys_org_id_idx ON api_keys (org_id);
