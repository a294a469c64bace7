-- The rollup job's cleanup of a table of per-user rows (018_funnel_days.sql, 019_breakdown_days.sql):
-- the rows of batches that no marker of report_days names (a day stored again: its newest marker
-- names the new batch; a day past ROLLUP_DAYS whose marker the TTL dropped; a round stopped
-- before its markers), once older than any marker is used ({hours}). A day is stored again only
-- when no server can use its old marker any more (an event touched the day, or the marker is
-- older than MAX_AGE_HOURS). A lightweight DELETE: the rows are masked at once and gone at the
-- parts' next merge.
DELETE FROM {table:Identifier}
WHERE stored < now() - toIntervalHour({hours:UInt32})
  AND (report, key, day, batch) NOT IN (
      SELECT report, key, day, toUInt64OrZero(value) FROM report_days FINAL WHERE startsWith(report, {prefix:String}))
