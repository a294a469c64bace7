-- Session spans (clickhouse/reports/session_durations.sql): per 15-minute UTC bucket, app,
-- country, bot flag, user (sipHash64(user_id)) and session (sipHash64(session_id), 0 without
-- one), the first and last event time. A named session is its spans' min to max. Sessions
-- without a session_id are cut where a user's events are more than 30 minutes apart: events in
-- one 15-minute bucket are never that far apart, so the cut always falls between two buckets
-- and the gap is the next bucket's first event minus the previous one's last: the same sessions
-- as cutting the raw events, from fewer rows.
--
-- min and max of a row seen twice are unchanged, so the view needs no cutover: rows stored while
-- this migration runs may be written by both the view and the backfill, harmlessly.
CREATE TABLE IF NOT EXISTS session_spans
(
    bucket  DateTime('UTC'),
    app_id  LowCardinality(String),
    country LowCardinality(String),
    is_bot  UInt8,
    user    UInt64,
    session UInt64,
    first   SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    last    SimpleAggregateFunction(max, DateTime64(3, 'UTC'))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(bucket)
ORDER BY (bucket, app_id, country, is_bot, user, session);

CREATE MATERIALIZED VIEW IF NOT EXISTS session_spans_mv TO session_spans AS
SELECT toStartOfFifteenMinutes(toDateTime(dt, 'UTC')) AS bucket, app_id, country, is_bot, sipHash64(user_id) AS user,
       if(session_id = '', 0, sipHash64(session_id)) AS session, min(dt) AS first, max(dt) AS last
FROM events
GROUP BY bucket, app_id, country, is_bot, user, session;

INSERT INTO session_spans
SELECT toStartOfFifteenMinutes(toDateTime(dt, 'UTC')) AS bucket, app_id, country, is_bot, sipHash64(user_id) AS user,
       if(session_id = '', 0, sipHash64(session_id)) AS session, min(dt) AS first, max(dt) AS last
FROM events
GROUP BY bucket, app_id, country, is_bot, user, session;

ALTER TABLE session_spans MODIFY SETTING non_replicated_deduplication_window = 1000;
