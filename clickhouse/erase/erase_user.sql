-- Erase ids' events (GDPR art. 17), run by server/data/erase.py with the log's consumer paused,
-- after it has inserted everything acknowledged: a user and the anonymous ids joined to them, or
-- (server/people/stitch.py) anonymous ids whose events were just copied to their person.
-- Parameters: {user_ids} (the ids), {app_id} ('' = every app), and the UTC 15-minute buckets and
-- hours their events fell in ({buckets}, {hours}), read before these statements run.
--
-- 1. The user's rows, from `events` and from every table keyed by user (user_hours,
--    session_spans, session_spans_v2, users_first, users_last and user_days hold sipHash64(user_id)). ALTER … DELETE
--    rewrites the parts: the rows are gone from disk, not only hidden. The delete from `events`
--    is waited for (the rebuilds below read `events`); the others run together in the background
--    (one table's mutation over several monthly partitions takes ~1 s on the embedded engine, even
--    on a few rows) and erase.py waits for all of them at the end. A mutation changes only the
--    parts that exist when it is made: the rebuilds' inserts below are not touched by it.
ALTER TABLE events DELETE WHERE user_id IN {user_ids:Array(String)} AND ({app_id:String} = '' OR app_id = {app_id:String})
SETTINGS mutations_sync = 2;
ALTER TABLE user_first_seen DELETE WHERE user_id IN {user_ids:Array(String)} AND ({app_id:String} = '' OR app_id = {app_id:String})
SETTINGS mutations_sync = 0;
ALTER TABLE sessions DELETE WHERE user_id IN {user_ids:Array(String)} AND ({app_id:String} = '' OR app_id = {app_id:String})
SETTINGS mutations_sync = 0;
ALTER TABLE user_hours DELETE WHERE user IN arrayMap(id -> sipHash64(id), {user_ids:Array(String)}) AND ({app_id:String} = '' OR app_id = {app_id:String})
SETTINGS mutations_sync = 0;
ALTER TABLE session_spans DELETE WHERE user IN arrayMap(id -> sipHash64(id), {user_ids:Array(String)}) AND ({app_id:String} = '' OR app_id = {app_id:String})
SETTINGS mutations_sync = 0;
ALTER TABLE users_first DELETE WHERE user IN arrayMap(id -> sipHash64(id), {user_ids:Array(String)}) AND ({app_id:String} = '' OR app_id = {app_id:String})
SETTINGS mutations_sync = 0;
ALTER TABLE session_spans_v2 DELETE WHERE user IN arrayMap(id -> sipHash64(id), {user_ids:Array(String)}) AND ({app_id:String} = '' OR app_id = {app_id:String})
SETTINGS mutations_sync = 0;
ALTER TABLE users_last DELETE WHERE user IN arrayMap(id -> sipHash64(id), {user_ids:Array(String)}) AND ({app_id:String} = '' OR app_id = {app_id:String})
SETTINGS mutations_sync = 0;
ALTER TABLE user_days DELETE WHERE user IN arrayMap(id -> sipHash64(id), {user_ids:Array(String)}) AND ({app_id:String} = '' OR app_id = {app_id:String})
SETTINGS mutations_sync = 0;
-- Who the user is: their latest traits and group memberships (their identity links: erase.py).
ALTER TABLE person_traits DELETE WHERE user_id IN {user_ids:Array(String)} AND ({app_id:String} = '' OR app_id = {app_id:String})
SETTINGS mutations_sync = 0;
ALTER TABLE group_members DELETE WHERE user_id IN {user_ids:Array(String)} AND ({app_id:String} = '' OR app_id = {app_id:String})
SETTINGS mutations_sync = 0;
-- The configured funnels' and breakdowns' stored days: the user's rows of every key, whichever
-- app (a key of all apps mixes them); step 3's change makes every day from the user's first
-- event stored again.
ALTER TABLE funnel_days DELETE WHERE user IN arrayMap(id -> sipHash64(id), {user_ids:Array(String)}) SETTINGS mutations_sync = 0;
ALTER TABLE breakdown_days DELETE WHERE user IN arrayMap(id -> sipHash64(id), {user_ids:Array(String)}) SETTINGS mutations_sync = 0;
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
--
-- 3. A change for the reports' cache of finished days (server/reports/cache.py): the days from
--    the user's first event on (in any app: {first_dt}) are computed again.
INSERT INTO event_changes (inserted, first_dt, rows)
VALUES (now64(3, 'UTC'), {first_dt:DateTime64(3, 'UTC')}, {rows:UInt64});
