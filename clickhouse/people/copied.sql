-- Events of one app's joined ids ({ids}) already copied under their persons ({persons}): a move a
-- crash cut short after `events` took its copies. The views over `events` write their parts after
-- `events`' own (measured: SIGKILLs during a copy of 200k events left `events` with the copies and
-- user_hours, sessions or users_first without them, never the reverse), so the copies are taken
-- out (uncopy.sql) and made again, and every view counts them (copy_events.sql).
SELECT count()
FROM events
WHERE app_id = {app_id:String} AND user_id IN {persons:Array(String)}
  AND event_id IN (SELECT event_id FROM events WHERE app_id = {app_id:String} AND user_id IN {ids:Array(String)})
