-- The configured breakdowns' finished days (REPORT_BREAKDOWNS), computed by the server's rollup
-- job (server/reports/breakdowns.py): per column, key (zone, app) and day, a row per value and
-- user (sipHash64(user_id)) with the user's events of that value that day, bots left out. A
-- breakdown over a range counts each value's users over the stored days' rows and the days
-- computed at once. As funnel_days (018): used only through a marker row of `report_days` whose
-- value is the day's batch; the TTL drops rows no one reads; erasing a user deletes their rows.
CREATE TABLE IF NOT EXISTS breakdown_days
(
    breakdown LowCardinality(String),
    key       String,
    day       Date,
    batch     UInt64,
    value     String,
    user      UInt64,
    events    UInt32,
    stored    DateTime DEFAULT now()
)
ENGINE = MergeTree
ORDER BY (breakdown, key, day, batch, value, user)
TTL stored + INTERVAL 3 DAY;
