-- Who was active on each UTC day: one row per (day, app, country, bot flag, user), the user as
-- sipHash64(user_id), as user_hours (008_user_hours.sql) is by the hour. Retention in zones whose
-- days are UTC days (clickhouse/reports/retention_days.sql; UTC is the default zone) reads this
-- instead of user_hours: at 10 M demo events a 30-day range holds 607k rows against 1.15 M user
-- hours, and weekly retention takes 39 ms instead of 54, daily 40 instead of 61.
--
-- Rows may repeat (before merges, or when a batch is re-sent): the reports count distinct users,
-- so the view needs no cutover: rows stored while this migration runs may be written by both the
-- view and the backfill below, harmlessly. Hash collisions: see 008_user_hours.sql.
CREATE TABLE IF NOT EXISTS user_days
(
    day     Date,
    app_id  LowCardinality(String),
    country LowCardinality(String),
    is_bot  UInt8,
    user    UInt64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (day, app_id, country, is_bot, user);

CREATE MATERIALIZED VIEW IF NOT EXISTS user_days_mv TO user_days AS
SELECT DISTINCT toDate(dt, 'UTC') AS day, app_id, country, is_bot, sipHash64(user_id) AS user
FROM events;

INSERT INTO user_days
SELECT DISTINCT toDate(dt, 'UTC') AS day, app_id, country, is_bot, sipHash64(user_id) AS user
FROM events;

ALTER TABLE user_days MODIFY SETTING non_replicated_deduplication_window = 1000;
