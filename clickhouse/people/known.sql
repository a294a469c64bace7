-- What `persons` (022) knows of the ids of one app's joins to decide: their persons, and every id
-- whose person is one of them or one of theirs (the ids a join moves with their person).
WITH (SELECT groupArray(person) FROM persons FINAL WHERE app_id = {app_id:String} AND id IN {ids:Array(String)}) AS theirs
SELECT id, person
FROM persons FINAL
WHERE app_id = {app_id:String}
  AND (id IN {ids:Array(String)} OR person IN {ids:Array(String)} OR has(theirs, person))
