-- Sessions' counts updated in the order of their ids. Each nginx worker
-- writes its messages in batches, one statement for many sessions, and a
-- conversation's messages go through any worker: two batches count into
-- the same sessions at once. The UPDATE took their rows in the order its
-- join happened to produce, which differs from one batch to the next, so
-- two batches could each hold a session the other was waiting for, and
-- PostgreSQL aborted one ("deadlock detected"; bench/rss met it four
-- times in under three minutes), whose messages were then written a
-- statement each. Taking the rows' locks first, in one order for all,
-- leaves nothing to cross.

CREATE OR REPLACE FUNCTION chathistory_count_messages() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM 1 FROM sessions
        WHERE id IN (SELECT session_id FROM new_rows)
        ORDER BY id
        FOR NO KEY UPDATE;

        UPDATE sessions s SET message_count = s.message_count + n.n
        FROM (SELECT session_id, count(*) AS n FROM new_rows GROUP BY 1) n
        WHERE s.id = n.session_id;
    ELSE
        -- a session's own deletion takes its messages along: nothing to do
        PERFORM 1 FROM sessions
        WHERE id IN (SELECT session_id FROM old_rows)
        ORDER BY id
        FOR NO KEY UPDATE;

        UPDATE sessions s SET message_count = s.message_count - o.n
        FROM (SELECT session_id, count(*) AS n FROM old_rows GROUP BY 1) o
        WHERE s.id = o.session_id;
    END IF;
    RETURN NULL;
END
$$;
