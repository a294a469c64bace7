-- Session spans in coarser buckets; clickhouse/reports/session_durations.sql reads this table
-- instead of session_spans (009). A named session's rows are per UTC day instead of per 15
-- minutes (the session is its rows' min to max whatever the buckets). Events without a
-- session_id are per 30 minutes: events in one 30-minute bucket are less than 30 minutes apart,
-- so a cut (a gap of more than 30 minutes) still falls only between two buckets, and the
-- sessions are the same as cutting the raw events. At 10 M demo events the rows a 30-day report
-- reads fall from 1.9 M to ~1.3 M and its sessions query from 206 to 158 ms, same answers.
--
-- min and max of a row seen twice are unchanged, so the view needs no cutover: rows stored while
-- this migration runs may be written by both the view and the backfill, harmlessly.
-- session_spans keeps the rows it has but gets no new ones (its view is dropped at the end); a
-- table of data is not dropped by a migration (server/cluster.py refuses it): an operator may run
-- `DROP TABLE session_spans` once every server runs this version.
CREATE TABLE IF NOT EXISTS session_spans_v2
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

CREATE MATERIALIZED VIEW IF NOT EXISTS session_spans_v2_mv TO session_spans_v2 AS
SELECT if(session_id = '', toStartOfInterval(toDateTime(dt, 'UTC'), INTERVAL 30 MINUTE), toStartOfDay(toDateTime(dt, 'UTC'))) AS bucket,
       app_id, country, is_bot, sipHash64(user_id) AS user,
       if(session_id = '', 0, sipHash64(session_id)) AS session, min(dt) AS first, max(dt) AS last
FROM events
GROUP BY bucket, app_id, country, is_bot, user, session;

INSERT INTO session_spans_v2
SELECT if(session_id = '', toStartOfInterval(toDateTime(dt, 'UTC'), INTERVAL 30 MINUTE), toStartOfDay(toDateTime(dt, 'UTC'))) AS bucket,
       app_id, country, is_bot, sipHash64(user_id) AS user,
       if(session_id = '', 0, sipHash64(session_id)) AS session, min(dt) AS first, max(dt) AS last
FROM events
GROUP BY bucket, app_id, country, is_bot, user, session;

ALTER TABLE session_spans_v2 MODIFY SETTING non_replicated_deduplication_window = 1000;

DROP VIEW IF EXISTS session_spans_mv SYNC;
