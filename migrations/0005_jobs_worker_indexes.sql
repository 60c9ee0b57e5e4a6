-- Indexes for chathistory-worker's housekeeping on the jobs table.

-- cleanup: DELETE FROM jobs WHERE status = 'done' AND updated_at < ...
CREATE INDEX jobs_done_updated_at_idx
    ON jobs (updated_at) WHERE status = 'done';

-- reembed: is an embed_message job for this message already waiting?
CREATE INDEX jobs_embed_message_pending_idx
    ON jobs ((payload->>'message_id'))
    WHERE kind = 'embed_message' AND status IN ('queued', 'running');
