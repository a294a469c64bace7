-- What changed in `events`, for the reports' cache of finished days (server/reports/cache.py):
-- one row per block inserted (the view runs at insert time, so `inserted` is when the rows
-- arrived, whatever their `dt`), with the earliest event time in it. An erasure adds a row too
-- (server/erase.py). Rows older than two days are of no use to a cache that keeps entries ten
-- minutes: the TTL drops them.
CREATE TABLE IF NOT EXISTS event_changes
(
    inserted DateTime64(3, 'UTC'),
    first_dt DateTime64(3, 'UTC'),
    rows     UInt64
)
ENGINE = MergeTree
ORDER BY inserted
TTL toDateTime(inserted) + INTERVAL 2 DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS event_changes_mv TO event_changes AS
SELECT max(now64(3, 'UTC')) AS inserted, min(dt) AS first_dt, count() AS rows
FROM events;
