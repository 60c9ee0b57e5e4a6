-- A session's message count, kept by triggers, so that reading a session
-- is one index lookup rather than a count of its messages.

ALTER TABLE sessions ADD COLUMN message_count bigint NOT NULL DEFAULT 0;

UPDATE sessions s SET message_count = c.n
FROM (SELECT session_id, count(*) AS n FROM messages GROUP BY session_id) c
WHERE c.session_id = s.id;

CREATE FUNCTION chathistory_count_messages() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE sessions s SET message_count = s.message_count + n.n
        FROM (SELECT session_id, count(*) AS n FROM new_rows GROUP BY 1) n
        WHERE s.id = n.session_id;
    ELSE
        -- a session's own deletion takes its messages along: nothing to do
        UPDATE sessions s SET message_count = s.message_count - o.n
        FROM (SELECT session_id, count(*) AS n FROM old_rows GROUP BY 1) o
        WHERE s.id = o.session_id;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER messages_count_insert AFTER INSERT ON messages
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION chathistory_count_messages();

CREATE TRIGGER messages_count_delete AFTER DELETE ON messages
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION chathistory_count_messages();
