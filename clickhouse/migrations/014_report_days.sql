-- Finished days of the per-day reports (active users, new users, session length, revenue),
-- computed once by the server's rollup job (server/reports/rollups.py) and read by the reports
-- instead of computing those days again: a row per report, key (zone, app) and day, the day's
-- value as JSON. A row is used only if it is less than a day old and no block inserted into
-- `events` since it was stored (011_event_changes.sql; counting those stamped in the margin
-- before it, which may have committed after) has an event on or before it (a day after it for
-- session length: a session can cross midnight); otherwise the day is computed, and the job
-- stores it again within ROLLUP_INTERVAL_SECONDS. The newest row of a day wins (FINAL);
-- the TTL drops rows no one reads any more.
CREATE TABLE IF NOT EXISTS report_days
(
    report LowCardinality(String),
    key    String,
    day    Date,
    value  String,
    stored DateTime64(3, 'UTC'),
    seen   UInt64 -- blocks in event_changes stamped in the margin before `stored`, when it was stored
)
ENGINE = ReplacingMergeTree(stored)
ORDER BY (report, key, day)
TTL toDateTime(stored) + INTERVAL 3 DAY;
