-- The configured funnels' finished days (REPORT_FUNNELS), computed by the server's rollup job
-- (server/reports/funnels.py): per funnel (`report`, as named in report_days), key (zone, app)
-- and day, every user's furthest level in chains of the steps that begin that day (the day's
-- first steps, the later steps up to the window after the day's end), as sipHash64(user_id) like
-- the other tables of users. A report over a range takes each user's highest level over the
-- stored days and the days computed at once. Rows are used only through a marker row of
-- `report_days` (a day's `value` is the `batch` of its rows), under the same rules of freshness
-- as the other stored days; a day stored again gets a new batch, a day still true is stamped
-- again with the same one. The job deletes the rows of batches no marker names, once older than
-- a marker is used (`stored_rows.drop_unreferenced`; not on a cluster). Erasing a user deletes
-- their rows of every key (clickhouse/erase/erase_user.sql; the erasure's change reaches back to
-- the user's first event in any app, so every day that held them is stored again).
CREATE TABLE IF NOT EXISTS funnel_days
(
    report LowCardinality(String),
    key    String,
    day    Date,
    batch  UInt64,
    user   UInt64,
    level  UInt8,
    stored DateTime DEFAULT now()
)
ENGINE = MergeTree
ORDER BY (report, key, day, batch);
