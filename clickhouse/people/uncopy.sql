-- The copies copied.sql found (in one app), deleted from `events` as a patch part (visible at once, 024): the
-- copy is then made again whole. Rows the views took from the first copy are counted again by the
-- second: harmless in the tables of user sets, firsts and lasts (user_hours, user_days,
-- users_first, users_last, session spans, active_users_15m); the counts are rebuilt from `events`
-- by the removal that follows (erase_rebuild.sql's buckets and hours, rebuild_sessions.sql).
DELETE FROM events
WHERE app_id = {app_id:String} AND user_id IN {persons:Array(String)}
  AND event_id IN (SELECT event_id FROM events WHERE app_id = {app_id:String} AND user_id IN {ids:Array(String)})
SETTINGS lightweight_delete_mode = 'lightweight_update', lightweight_deletes_sync = 0
