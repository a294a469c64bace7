-- Ids joined to another person with events under their own id: the stitch job moves those events
-- to the person. Looked for among the ids of `events` inserted since {since} (ids_seen, 023), the
-- ids whose person this round's joins changed ({changed}), and those of a stitch a crash cut
-- after its copy (their removal recorded in `erasures`, 021/022); the first two only while
-- users_first (012) names them (events still under them). movers_all.sql looks at every id.
WITH looked AS
(
    SELECT app_id, user_id AS id FROM ids_seen WHERE inserted >= {since:DateTime64(3, 'UTC')}
    UNION ALL
    SELECT tupleElement(pair, 1) AS app_id, tupleElement(pair, 2) AS id FROM (SELECT arrayJoin({changed:Array(Tuple(String, String))}) AS pair)
)
SELECT app_id, id, person
FROM persons FINAL
WHERE ((app_id, id) IN (SELECT app_id, id FROM looked)
       AND (app_id, sipHash64(id)) IN (SELECT app_id, user FROM users_first
                                       WHERE (app_id, user) IN (SELECT app_id, sipHash64(id) FROM looked)))
   OR (app_id, id) IN (SELECT app_id, user_id FROM erasures WHERE stitch = 1)
ORDER BY app_id, id
LIMIT {limit:UInt32}
