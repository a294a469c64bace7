-- Each block's latest event time next to its earliest (011_event_changes.sql), so that a block
-- of old events (an import, an offline device's queue, a client with a wrong clock) makes only
-- the days it can touch computed again: from its earliest event, less the days a report reaches
-- back, to its latest, plus the days it reaches forward (29 for WAU/MAU windows; every later day
-- for new and total users), instead of every day after its earliest (server/reports/rollups.py
-- `dirty_days`). Rows stored before this migration, and erasures (which add a row without it),
-- take the default: the end of DateTime64's range, as if they reached every later day, which is
-- what the reports assumed until now.
ALTER TABLE event_changes ADD COLUMN IF NOT EXISTS last_dt DateTime64(3, 'UTC') DEFAULT toDateTime64('2299-12-31 23:59:59', 3, 'UTC');

DROP VIEW IF EXISTS event_changes_mv SYNC;

CREATE MATERIALIZED VIEW IF NOT EXISTS event_changes_mv TO event_changes AS
SELECT max(now64(3, 'UTC')) AS inserted, min(dt) AS first_dt, max(dt) AS last_dt, count() AS rows
FROM events;
