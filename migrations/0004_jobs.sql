-- The worker's job queue. Jobs are claimed with FOR UPDATE SKIP LOCKED, so
-- any number of workers can share it; an insert wakes them with NOTIFY.

CREATE TABLE jobs (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind          text        NOT NULL,
    payload       jsonb       NOT NULL DEFAULT '{}',
    status        text        NOT NULL DEFAULT 'queued'
                              CHECK (status IN ('queued', 'running', 'done',
                                                'failed')),
    attempts      integer     NOT NULL DEFAULT 0,
    max_attempts  integer     NOT NULL DEFAULT 5,
    run_at        timestamptz NOT NULL DEFAULT now(),
    locked_by     text,
    -- a running job whose lock has passed belongs to a crashed worker
    locked_until  timestamptz,
    last_error    text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- claiming: WHERE status = 'queued' AND run_at <= now() ORDER BY run_at
CREATE INDEX jobs_queued_run_at_idx
    ON jobs (run_at) WHERE status = 'queued';

-- taking over: WHERE status = 'running' AND locked_until < now()
CREATE INDEX jobs_running_locked_until_idx
    ON jobs (locked_until) WHERE status = 'running';

-- One NOTIFY per kind per statement, the kind as payload; a notification is
-- only a wake-up call, the table stays the truth.
CREATE FUNCTION chathistory_jobs_notify() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    PERFORM pg_notify('chathistory_jobs', k.kind)
       FROM (SELECT DISTINCT kind FROM inserted_jobs) AS k;
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_notify
    AFTER INSERT ON jobs
    REFERENCING NEW TABLE AS inserted_jobs
    FOR EACH STATEMENT
    EXECUTE FUNCTION chathistory_jobs_notify();
