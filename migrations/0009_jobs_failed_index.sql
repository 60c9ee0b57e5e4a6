-- Failed jobs are counted for chathistory_status (nginx) every few seconds;
-- without an index of their own that would read the whole table, done jobs
-- included.

CREATE INDEX jobs_failed_kind_idx
    ON jobs (kind) WHERE status = 'failed';
