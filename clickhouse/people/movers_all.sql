-- Every id joined to another person that still has events under its own id (users_first, 012,
-- names every id with events), and those of a stitch a crash cut after its copy: the stitch job's
-- full look (at start, hourly, and in the CLI), for what movers.sql's window can miss (a log
-- replayed long after its events were acknowledged, a round that did not run).
SELECT app_id, id, person
FROM persons FINAL
WHERE (app_id, sipHash64(id)) IN (SELECT app_id, user FROM users_first)
   OR (app_id, id) IN (SELECT app_id, user_id FROM erasures WHERE stitch = 1)
ORDER BY app_id, id
LIMIT {limit:UInt32}
