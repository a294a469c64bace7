-- The raw event table: one row per acknowledged event, every seed's fields.
--
-- ORDER BY (event, toDate(dt), user_id, dt): the reports filter by event name (funnels, ratios,
-- revenue read a few names) and by a date range, then group by user. Leading with the
-- low-cardinality `event` lets those queries skip most granules; the day comes next so that a
-- date range stays a contiguous run inside each event; `user_id` keeps a user's rows together
-- within a day, which both compresses the id column and helps per-user aggregation.
-- Monthly partitions let a date range drop whole partitions and keep the part count small.
CREATE TABLE IF NOT EXISTS events
(
    event_id    UUID DEFAULT generateUUIDv4(),  -- the client's when it sends one
    dt          DateTime64(3, 'UTC'),
    received_at DateTime64(3, 'UTC'),
    event       LowCardinality(String),
    user_id     String,
    session_id  String,
    screen      LowCardinality(String),
    elem        LowCardinality(String),
    amount      Int64,
    app_id      LowCardinality(String),
    type        LowCardinality(String),
    country     LowCardinality(String),
    region      LowCardinality(String),
    city        LowCardinality(String),
    props       Map(String, String)
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(dt)
ORDER BY (event, toDate(dt), user_id, dt);
