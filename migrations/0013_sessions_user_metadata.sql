-- The operator's own id for the speaker of a session, and a small JSON
-- object of their own, both optional. Adding nullable columns without a
-- default rewrites no row: existing sessions read them as NULL.

ALTER TABLE sessions ADD COLUMN user_id text;
ALTER TABLE sessions ADD COLUMN metadata jsonb;

-- "this user's sessions, newest first", keyset-paginated, per organization
CREATE INDEX sessions_org_id_user_id_created_at_id_idx
    ON sessions (org_id, user_id, created_at DESC, id DESC)
    WHERE user_id IS NOT NULL;

-- metadata containment (metadata @> '{"k":"v"}')
CREATE INDEX sessions_metadata_idx
    ON sessions USING gin (metadata jsonb_path_ops)
    WHERE metadata IS NOT NULL;
