-- Erase ids' events (GDPR art. 17), run by server/data/erase.py with the log's consumer paused,
-- after it has inserted everything acknowledged: a user and the anonymous ids joined to them, or
-- (server/people/stitch.py) anonymous ids whose events were just copied to their person.
-- Parameters: {pairs} ((app_id, id) of each id in each app it goes from), and the UTC 15-minute
-- buckets and hours their events fell in ({buckets}, {hours}), read before these statements run.
--
-- 1. The user's rows, from `events` and from every table keyed by user (user_hours,
--    session_spans, session_spans_v2, users_first, users_last and user_days hold sipHash64(user_id)). ALTER … DELETE
--    rewrites the parts: the rows are gone from disk, not only hidden. They run together in the
--    background (one table's mutation over several monthly partitions takes ~1 s on the embedded
--    engine, even on a few rows); erase.py waits for all of them before erase_rebuild.sql.
ALTER TABLE events DELETE WHERE (app_id, user_id) IN {pairs:Array(Tuple(String, String))}
SETTINGS mutations_sync = 0;
ALTER TABLE user_first_seen DELETE WHERE (app_id, user_id) IN {pairs:Array(Tuple(String, String))}
SETTINGS mutations_sync = 0;
ALTER TABLE ids_seen DELETE WHERE (app_id, user_id) IN {pairs:Array(Tuple(String, String))}
SETTINGS mutations_sync = 0;
ALTER TABLE sessions DELETE WHERE (app_id, user_id) IN {pairs:Array(Tuple(String, String))}
SETTINGS mutations_sync = 0;
ALTER TABLE user_hours DELETE WHERE (app_id, user) IN arrayMap(p -> (p.1, sipHash64(p.2)), {pairs:Array(Tuple(String, String))})
SETTINGS mutations_sync = 0;
ALTER TABLE session_spans DELETE WHERE (app_id, user) IN arrayMap(p -> (p.1, sipHash64(p.2)), {pairs:Array(Tuple(String, String))})
SETTINGS mutations_sync = 0;
ALTER TABLE users_first DELETE WHERE (app_id, user) IN arrayMap(p -> (p.1, sipHash64(p.2)), {pairs:Array(Tuple(String, String))})
SETTINGS mutations_sync = 0;
ALTER TABLE session_spans_v2 DELETE WHERE (app_id, user) IN arrayMap(p -> (p.1, sipHash64(p.2)), {pairs:Array(Tuple(String, String))})
SETTINGS mutations_sync = 0;
ALTER TABLE users_last DELETE WHERE (app_id, user) IN arrayMap(p -> (p.1, sipHash64(p.2)), {pairs:Array(Tuple(String, String))})
SETTINGS mutations_sync = 0;
ALTER TABLE user_days DELETE WHERE (app_id, user) IN arrayMap(p -> (p.1, sipHash64(p.2)), {pairs:Array(Tuple(String, String))})
SETTINGS mutations_sync = 0;
-- Who the user is: their latest traits and group memberships (their identity links: erase.py).
ALTER TABLE person_traits DELETE WHERE (app_id, user_id) IN {pairs:Array(Tuple(String, String))}
SETTINGS mutations_sync = 0;
ALTER TABLE group_members DELETE WHERE (app_id, user_id) IN {pairs:Array(Tuple(String, String))}
SETTINGS mutations_sync = 0;
-- The configured funnels' and breakdowns' stored days: the user's rows of every key, whichever
-- app (a key of all apps mixes them); step 3's change makes every day from the user's first
-- event stored again.
ALTER TABLE funnel_days DELETE WHERE user IN arrayMap(p -> sipHash64(p.2), {pairs:Array(Tuple(String, String))}) SETTINGS mutations_sync = 0;
ALTER TABLE breakdown_days DELETE WHERE user IN arrayMap(p -> sipHash64(p.2), {pairs:Array(Tuple(String, String))}) SETTINGS mutations_sync = 0;
