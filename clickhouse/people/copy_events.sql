-- The events of one app's joined ids ({ids}) copied under their persons ({persons}, in the same
-- order), with the pipeline's consumer paused; every view over `events` counts the copies for the
-- person. Then server/data/erase.py's removal takes the originals out of `events` and of every
-- table keyed by user, and rebuilds the rollups' buckets. An event already copied (a crash came
-- between this and the removal) is not copied again: its event_id is found under the person.
-- (The ids are picked in a subquery: in the outer WHERE, `user_id` would name the replaced one.)
INSERT INTO events
SELECT * REPLACE (transform(user_id, {ids:Array(String)}, {persons:Array(String)}, user_id) AS user_id)
FROM (SELECT * FROM events
      WHERE app_id = {app_id:String} AND user_id IN {ids:Array(String)}
        AND event_id NOT IN (SELECT event_id FROM events WHERE app_id = {app_id:String} AND user_id IN {persons:Array(String)}))
SETTINGS insert_deduplicate = 0
