-- The events of one app's joined ids ({ids}) copied under their persons ({persons}, in the same
-- order), with the pipeline's consumer paused; every view over `events` counts the copies for the
-- person. Then server/data/erase.py's removal takes the originals out of `events` and of every
-- table keyed by user, and rebuilds the rollups' buckets. Copies a crash left from an earlier
-- move of these ids are taken out first (copied.sql, uncopy.sql): the copy is always whole.
-- (The ids are picked in a subquery: in the outer WHERE, `user_id` would name the replaced one.)
INSERT INTO events
SELECT * REPLACE (transform(user_id, {ids:Array(String)}, {persons:Array(String)}, user_id) AS user_id)
FROM (SELECT * FROM events WHERE app_id = {app_id:String} AND user_id IN {ids:Array(String)})
SETTINGS insert_deduplicate = 0
