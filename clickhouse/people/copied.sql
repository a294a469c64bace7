-- The apps of a move whose joined ids' events are already copied under their persons ({pairs}:
-- (app_id, id) of every id and person of the move): a move a crash cut short after `events` took
-- its copies (an event_id under two of them). The views over `events` write their parts after
-- `events`' own (measured: SIGKILLs during a copy of 200k events left `events` with the copies and
-- user_hours, sessions or users_first without them, never the reverse), so the copies are taken
-- out (uncopy.sql) and made again, and every view counts them (copy_events.sql). One read of
-- `events` for every app (at 10 M demo events and 1,000 ids ~0.7 s; one a side and app took 2.1 s).
SELECT DISTINCT app_id
FROM
(
    SELECT app_id, event_id
    FROM events
    WHERE (app_id, user_id) IN {pairs:Array(Tuple(String, String))}
    GROUP BY app_id, event_id
    HAVING uniqExact(user_id) > 1
)
