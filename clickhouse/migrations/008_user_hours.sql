-- Who was active in each UTC hour: one row per (hour, app, country, bot flag, user), the user as
-- sipHash64(user_id). DAU/WAU/MAU (clickhouse/reports/active_users.sql) OR together, per user,
-- a bit per day of the hours they were active in, and count the users whose bits fall in each
-- window: one pass over this table instead of merging exact user sets per window.
--
-- Rows may repeat (before merges, or when a batch is re-sent): OR-ing a bit twice changes
-- nothing, so the reports are exact whatever the merges have done. For the same reason the
-- view has no cutover: rows stored while this migration runs may be written by both the view
-- and the backfill below, harmlessly.
--
-- 64-bit user hashes: two of n users share one with probability about n^2 / 2^65; at 10^8
-- users 0.03% that any pair does (and then a day's count is off by one while both are active).
-- Hours are exact days in every zone whose offset is whole hours (all but a few, e.g.
-- Asia/Kolkata +5:30); for those and for the `event` filter the reports read `events`.
CREATE TABLE IF NOT EXISTS user_hours
(
    hour    DateTime('UTC'),
    app_id  LowCardinality(String),
    country LowCardinality(String),
    is_bot  UInt8,
    user    UInt64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, app_id, country, is_bot, user);

CREATE MATERIALIZED VIEW IF NOT EXISTS user_hours_mv TO user_hours AS
SELECT DISTINCT toStartOfHour(toDateTime(dt, 'UTC')) AS hour, app_id, country, is_bot, sipHash64(user_id) AS user
FROM events;

INSERT INTO user_hours
SELECT DISTINCT toStartOfHour(toDateTime(dt, 'UTC')) AS hour, app_id, country, is_bot, sipHash64(user_id) AS user
FROM events;

ALTER TABLE user_hours MODIFY SETTING non_replicated_deduplication_window = 1000;
