-- Enrichment at ingest (server/ingest/enrich.py): who sent the event (browser, OS, device, bot),
-- where the visit came from (referrer, UTM). Rows stored before this migration get the defaults
-- ('' and 0: not a bot). `country` was already a column; it is now also filled from the client's
-- IP when the event did not send its own. The IP itself is stored nowhere.
ALTER TABLE events
    ADD COLUMN IF NOT EXISTS browser         LowCardinality(String),
    ADD COLUMN IF NOT EXISTS browser_version LowCardinality(String),
    ADD COLUMN IF NOT EXISTS os              LowCardinality(String),
    ADD COLUMN IF NOT EXISTS device_type     LowCardinality(String),
    ADD COLUMN IF NOT EXISTS is_bot          UInt8,
    ADD COLUMN IF NOT EXISTS referrer        String,
    ADD COLUMN IF NOT EXISTS referrer_domain LowCardinality(String),
    ADD COLUMN IF NOT EXISTS utm_source      LowCardinality(String),
    ADD COLUMN IF NOT EXISTS utm_medium      LowCardinality(String),
    ADD COLUMN IF NOT EXISTS utm_campaign    LowCardinality(String),
    ADD COLUMN IF NOT EXISTS utm_term        String,
    ADD COLUMN IF NOT EXISTS utm_content     String;

-- The Buffer table has the same columns as `events` (the migration runner flushed it first).
ALTER TABLE events_buffer
    ADD COLUMN IF NOT EXISTS browser         LowCardinality(String),
    ADD COLUMN IF NOT EXISTS browser_version LowCardinality(String),
    ADD COLUMN IF NOT EXISTS os              LowCardinality(String),
    ADD COLUMN IF NOT EXISTS device_type     LowCardinality(String),
    ADD COLUMN IF NOT EXISTS is_bot          UInt8,
    ADD COLUMN IF NOT EXISTS referrer        String,
    ADD COLUMN IF NOT EXISTS referrer_domain LowCardinality(String),
    ADD COLUMN IF NOT EXISTS utm_source      LowCardinality(String),
    ADD COLUMN IF NOT EXISTS utm_medium      LowCardinality(String),
    ADD COLUMN IF NOT EXISTS utm_campaign    LowCardinality(String),
    ADD COLUMN IF NOT EXISTS utm_term        String,
    ADD COLUMN IF NOT EXISTS utm_content     String;

-- Bots are stored but not counted: every rollup keeps `is_bot` as the last key column, so the
-- reports leave bots out by default and count them with `bots=include`. Rows already in the
-- rollups came from events stored before enrichment: is_bot = 0, as in `events`.
ALTER TABLE active_users_15m ADD COLUMN IF NOT EXISTS is_bot UInt8 AFTER event,
    MODIFY ORDER BY (bucket, app_id, country, event, is_bot);
ALTER TABLE user_first_seen ADD COLUMN IF NOT EXISTS is_bot UInt8 AFTER event,
    MODIFY ORDER BY (user_id, app_id, country, event, is_bot);
ALTER TABLE sessions ADD COLUMN IF NOT EXISTS is_bot UInt8 AFTER country,
    MODIFY ORDER BY (session_id, user_id, app_id, country, is_bot);
ALTER TABLE event_counts_hourly ADD COLUMN IF NOT EXISTS is_bot UInt8 AFTER country,
    MODIFY ORDER BY (hour, event, app_id, country, is_bot);
ALTER TABLE revenue_15m ADD COLUMN IF NOT EXISTS is_bot UInt8 AFTER event,
    MODIFY ORDER BY (bucket, app_id, country, event, is_bot);

-- The views, replaced by ones that carry is_bot. Each new view counts every row inserted after
-- it exists; the old one counted every row before it was dropped. Migrations run before the
-- server takes traffic (the log's consumer starts after them), so no row falls between the two;
-- with ClickHouse server replicas taking traffic, run `analytics-api migrate` before deploying.
DROP VIEW IF EXISTS active_users_15m_mv SYNC;
CREATE MATERIALIZED VIEW IF NOT EXISTS active_users_15m_mv TO active_users_15m AS
SELECT toStartOfFifteenMinutes(toDateTime(dt, 'UTC')) AS bucket, app_id, country, event, is_bot,
       uniqExactState(user_id) AS users
FROM events
GROUP BY bucket, app_id, country, event, is_bot;

DROP VIEW IF EXISTS user_first_seen_mv SYNC;
CREATE MATERIALIZED VIEW IF NOT EXISTS user_first_seen_mv TO user_first_seen AS
SELECT user_id, app_id, country, event, is_bot, min(dt) AS first_seen
FROM events
GROUP BY user_id, app_id, country, event, is_bot;

DROP VIEW IF EXISTS sessions_mv SYNC;
CREATE MATERIALIZED VIEW IF NOT EXISTS sessions_mv TO sessions AS
SELECT session_id, user_id, app_id, country, is_bot, min(dt) AS started, max(dt) AS ended, count() AS events
FROM events
WHERE session_id != ''
GROUP BY session_id, user_id, app_id, country, is_bot;

DROP VIEW IF EXISTS event_counts_hourly_mv SYNC;
CREATE MATERIALIZED VIEW IF NOT EXISTS event_counts_hourly_mv TO event_counts_hourly AS
SELECT toStartOfHour(toDateTime(dt, 'UTC')) AS hour, event, app_id, country, is_bot, count() AS events
FROM events
GROUP BY hour, event, app_id, country, is_bot;

DROP VIEW IF EXISTS revenue_15m_mv SYNC;
CREATE MATERIALIZED VIEW IF NOT EXISTS revenue_15m_mv TO revenue_15m AS
SELECT toStartOfFifteenMinutes(toDateTime(dt, 'UTC')) AS bucket, app_id, country, event, is_bot,
       sum(amount) AS revenue, uniqExactIfState(user_id, amount > 0) AS payers
FROM events
WHERE amount != 0
GROUP BY bucket, app_id, country, event, is_bot;

-- Each user's first event within the filters; `bots` = 1 counts bot events too.
CREATE OR REPLACE VIEW users_first_seen AS
SELECT user_id, min(first_seen) AS first
FROM user_first_seen
WHERE ({app_id:String} = '' OR app_id = {app_id:String})
  AND ({country:String} = '' OR country = {country:String})
  AND ({event:String} = '' OR event = {event:String})
  AND ({bots:UInt8} = 1 OR is_bot = 0)
GROUP BY user_id;

-- Cookieless visitors (server/ingest/visitors.py): one random salt per UTC day, shared by every
-- process through this table; the salt of a day is made the day before and deleted when the day
-- is over (and by the TTL, should no process be running then), so an id links a visitor within
-- one day only and cannot be recomputed later.
CREATE TABLE IF NOT EXISTS visitor_salts
(
    day     Date,
    salt    String,
    created DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
ORDER BY day
TTL day + INTERVAL 1 DAY;
