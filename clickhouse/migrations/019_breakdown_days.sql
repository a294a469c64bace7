-- The configured breakdowns' finished days (REPORT_BREAKDOWNS), computed by the server's rollup
-- job (server/reports/breakdowns.py): per column (`report`, as named in report_days), key (zone,
-- app) and day, a row per value and user (sipHash64(user_id)) with the user's events of that
-- value that day, bots left out. A breakdown over a range counts each value's users over the
-- stored days' rows and the days computed at once. As funnel_days (018): used only through a
-- marker row of `report_days` whose value is the day's batch, rows of batches no marker names
-- deleted by the job, a user's rows by their erasure. Ordered by value and user within a day:
-- the reports' GROUP BY value runs ~25% faster than over rows in the order they were computed.
CREATE TABLE IF NOT EXISTS breakdown_days
(
    report    LowCardinality(String),
    key       String,
    day       Date,
    batch     UInt64,
    value     String,
    user      UInt64,
    events    UInt32,
    stored    DateTime DEFAULT now()
)
ENGINE = MergeTree
ORDER BY (report, key, day, batch, value, user);
