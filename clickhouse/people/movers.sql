-- Ids joined to another person that still have events under their own id (users_first, 012,
-- names every id with events): the stitch job moves those events to the person. Also the ids of
-- a stitch a crash cut after its copy (their removal recorded in `erasures`, 021/022).
SELECT app_id, id, person
FROM persons FINAL
WHERE (app_id, sipHash64(id)) IN (SELECT app_id, user FROM users_first)
   OR (app_id, id) IN (SELECT app_id, user_id FROM erasures WHERE stitch = 1)
ORDER BY app_id, id
LIMIT {limit:UInt32}
