-- The second half of a removal (erase_user.sql is the first), run by server/data/erase.py once
-- the ids' rows are gone from `events`: same parameters. A mutation changes only the parts that
-- exist when it is made, so each rebuild's INSERT right after its DELETE is not touched by it;
-- erase.py waits for the deletes at the end, then adds the change for the reports' cache of
-- finished days (event_changes: the days from the ids' first event on are computed again).
--
-- 2. The rollups that hold no user, only counts and user sets: their buckets that held the
--    user's events are rebuilt from what `events` holds now, with the views' own SELECTs
--    (007_enrichment.sql). insert_deduplicate = 0: a rebuilt block may equal one inserted before.
ALTER TABLE active_users_15m DELETE WHERE bucket IN {buckets:Array(DateTime('UTC'))} SETTINGS mutations_sync = 0;
INSERT INTO active_users_15m
SELECT toStartOfFifteenMinutes(toDateTime(dt, 'UTC')) AS bucket, app_id, country, event, is_bot,
       uniqExactState(user_id) AS users
FROM events
WHERE toStartOfFifteenMinutes(toDateTime(dt, 'UTC')) IN {buckets:Array(DateTime('UTC'))}
GROUP BY bucket, app_id, country, event, is_bot
SETTINGS insert_deduplicate = 0;
ALTER TABLE revenue_15m DELETE WHERE bucket IN {buckets:Array(DateTime('UTC'))} SETTINGS mutations_sync = 0;
INSERT INTO revenue_15m
SELECT toStartOfFifteenMinutes(toDateTime(dt, 'UTC')) AS bucket, app_id, country, event, is_bot,
       sum(amount) AS revenue, uniqExactIfState(user_id, amount > 0) AS payers
FROM events
WHERE amount != 0 AND toStartOfFifteenMinutes(toDateTime(dt, 'UTC')) IN {buckets:Array(DateTime('UTC'))}
GROUP BY bucket, app_id, country, event, is_bot
SETTINGS insert_deduplicate = 0;
ALTER TABLE event_counts_hourly DELETE WHERE hour IN {hours:Array(DateTime('UTC'))} SETTINGS mutations_sync = 0;
INSERT INTO event_counts_hourly
SELECT toStartOfHour(toDateTime(dt, 'UTC')) AS hour, event, app_id, country, is_bot, count() AS events
FROM events
WHERE toStartOfHour(toDateTime(dt, 'UTC')) IN {hours:Array(DateTime('UTC'))}
GROUP BY hour, event, app_id, country, is_bot
SETTINGS insert_deduplicate = 0;
