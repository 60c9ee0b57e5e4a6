-- Counts of chathistory_rate_limit_zone: one row per zone, key (an
-- organization) and fixed window, to which every nginx host adds what it
-- admitted every sync interval. UNLOGGED: counts live a window or two, so
-- they are not worth WAL; a crash or a failover empties the table and a
-- window starts from zero again (at worst one window's limit more).

CREATE UNLOGGED TABLE rate_limits (
    zone        text        NOT NULL,
    -- unix time in milliseconds / the window's length
    window_id   bigint      NOT NULL,
    key         text        NOT NULL,
    n           bigint      NOT NULL,
    -- the end of the next window: later rows are deleted by the syncs
    expires_at  timestamptz NOT NULL,
    -- a sync reads the window's other keys by the first two columns
    PRIMARY KEY (zone, window_id, key)
);

CREATE INDEX rate_limits_expires_at_idx ON rate_limits (expires_at);
