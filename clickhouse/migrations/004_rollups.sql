-- Rollups that materialized views keep current, read by the report API (server/reports/).
--
-- Every view reads `events` (the Buffer's destination, so each row is counted once) and only
-- rows with received_at >= the cutover {{CUTOVER}}, the moment this migration ran. The INSERT
-- ... SELECT after each view backfills the rows received before the cutover. The two sets do
-- not overlap, so a row is counted once even if it reaches `events` while this runs. (A row
-- received before the cutover that reaches `events` only after the backfill would be missed:
-- migrations run before the server takes traffic, and after the Buffer is flushed.)
--
-- Time buckets are 15 minutes (UTC): every time zone's offset is a multiple of 15 minutes, so a
-- day in any zone is a whole number of buckets and the reports can take `tz`.

-- Distinct active users per 15 minutes, as exact states (merged into days, weeks, months).
CREATE TABLE IF NOT EXISTS active_users_15m
(
    bucket  DateTime('UTC'),
    app_id  LowCardinality(String),
    country LowCardinality(String),
    event   LowCardinality(String),
    users   AggregateFunction(uniqExact, String)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(bucket)
ORDER BY (bucket, app_id, country, event);

CREATE MATERIALIZED VIEW IF NOT EXISTS active_users_15m_mv TO active_users_15m AS
SELECT toStartOfFifteenMinutes(toDateTime(dt, 'UTC')) AS bucket, app_id, country, event, uniqExactState(user_id) AS users
FROM events
WHERE received_at >= fromUnixTimestamp64Milli({{CUTOVER}}, 'UTC')
GROUP BY bucket, app_id, country, event;

INSERT INTO active_users_15m
SELECT toStartOfFifteenMinutes(toDateTime(dt, 'UTC')) AS bucket, app_id, country, event, uniqExactState(user_id) AS users
FROM events
WHERE received_at < fromUnixTimestamp64Milli({{CUTOVER}}, 'UTC')
GROUP BY bucket, app_id, country, event;

-- Each user's first event (per app, country and event name; min() over them gives the first ever).
CREATE TABLE IF NOT EXISTS user_first_seen
(
    user_id    String,
    app_id     LowCardinality(String),
    country    LowCardinality(String),
    event      LowCardinality(String),
    first_seen SimpleAggregateFunction(min, DateTime64(3, 'UTC'))
)
ENGINE = AggregatingMergeTree
ORDER BY (user_id, app_id, country, event);

CREATE MATERIALIZED VIEW IF NOT EXISTS user_first_seen_mv TO user_first_seen AS
SELECT user_id, app_id, country, event, min(dt) AS first_seen
FROM events
WHERE received_at >= fromUnixTimestamp64Milli({{CUTOVER}}, 'UTC')
GROUP BY user_id, app_id, country, event;

INSERT INTO user_first_seen
SELECT user_id, app_id, country, event, min(dt) AS first_seen
FROM events
WHERE received_at < fromUnixTimestamp64Milli({{CUTOVER}}, 'UTC')
GROUP BY user_id, app_id, country, event;

-- Each user's first event ever within the filters, as a parameterized view the reports share:
-- FROM users_first_seen(app_id = …, country = …, event = …); an empty value means any.
CREATE VIEW IF NOT EXISTS users_first_seen AS
SELECT user_id, min(first_seen) AS first
FROM user_first_seen
WHERE ({app_id:String} = '' OR app_id = {app_id:String})
  AND ({country:String} = '' OR country = {country:String})
  AND ({event:String} = '' OR event = {event:String})
GROUP BY user_id;

-- Sessions the client named (`session_id` set): start, end and event count. Events without a
-- session_id are cut into sessions at query time (30 minutes of inactivity; server/reports/).
CREATE TABLE IF NOT EXISTS sessions
(
    session_id String,
    user_id    String,
    app_id     LowCardinality(String),
    country    LowCardinality(String),
    started    SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    ended      SimpleAggregateFunction(max, DateTime64(3, 'UTC')),
    events     SimpleAggregateFunction(sum, UInt64)
)
ENGINE = AggregatingMergeTree
ORDER BY (session_id, user_id, app_id, country);

CREATE MATERIALIZED VIEW IF NOT EXISTS sessions_mv TO sessions AS
SELECT session_id, user_id, app_id, country, min(dt) AS started, max(dt) AS ended, count() AS events
FROM events
WHERE session_id != '' AND received_at >= fromUnixTimestamp64Milli({{CUTOVER}}, 'UTC')
GROUP BY session_id, user_id, app_id, country;

INSERT INTO sessions
SELECT session_id, user_id, app_id, country, min(dt) AS started, max(dt) AS ended, count() AS events
FROM events
WHERE session_id != '' AND received_at < fromUnixTimestamp64Milli({{CUTOVER}}, 'UTC')
GROUP BY session_id, user_id, app_id, country;

-- Events per hour and name (dashboards).
CREATE TABLE IF NOT EXISTS event_counts_hourly
(
    hour    DateTime('UTC'),
    event   LowCardinality(String),
    app_id  LowCardinality(String),
    country LowCardinality(String),
    events  UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (hour, event, app_id, country);

CREATE MATERIALIZED VIEW IF NOT EXISTS event_counts_hourly_mv TO event_counts_hourly AS
SELECT toStartOfHour(toDateTime(dt, 'UTC')) AS hour, event, app_id, country, count() AS events
FROM events
WHERE received_at >= fromUnixTimestamp64Milli({{CUTOVER}}, 'UTC')
GROUP BY hour, event, app_id, country;

INSERT INTO event_counts_hourly
SELECT toStartOfHour(toDateTime(dt, 'UTC')) AS hour, event, app_id, country, count() AS events
FROM events
WHERE received_at < fromUnixTimestamp64Milli({{CUTOVER}}, 'UTC')
GROUP BY hour, event, app_id, country;

-- Revenue per 15 minutes: sum of amount and the exact set of paying users (amount > 0).
CREATE TABLE IF NOT EXISTS revenue_15m
(
    bucket  DateTime('UTC'),
    app_id  LowCardinality(String),
    country LowCardinality(String),
    event   LowCardinality(String),
    revenue SimpleAggregateFunction(sum, Int64),
    payers  AggregateFunction(uniqExactIf, String, UInt8)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(bucket)
ORDER BY (bucket, app_id, country, event);

CREATE MATERIALIZED VIEW IF NOT EXISTS revenue_15m_mv TO revenue_15m AS
SELECT toStartOfFifteenMinutes(toDateTime(dt, 'UTC')) AS bucket, app_id, country, event,
       sum(amount) AS revenue, uniqExactIfState(user_id, amount > 0) AS payers
FROM events
WHERE amount != 0 AND received_at >= fromUnixTimestamp64Milli({{CUTOVER}}, 'UTC')
GROUP BY bucket, app_id, country, event;

INSERT INTO revenue_15m
SELECT toStartOfFifteenMinutes(toDateTime(dt, 'UTC')) AS bucket, app_id, country, event,
       sum(amount) AS revenue, uniqExactIfState(user_id, amount > 0) AS payers
FROM events
WHERE amount != 0 AND received_at < fromUnixTimestamp64Milli({{CUTOVER}}, 'UTC')
GROUP BY bucket, app_id, country, event;
