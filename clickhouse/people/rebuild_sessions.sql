-- The rows of `sessions` (004, 007) of the sessions a stitch moved ({sessions}: (app_id,
-- session_id) of the moved events), rebuilt from `events` after the removal deleted the originals
-- there: each session's rows, under the persons now, counted once whatever a copy cut short and
-- made again left (uncopy.sql). `events` is read from {from} to {to} only: the earliest start and
-- latest end of those sessions' rows, by any user, read before this DELETE (every event of theirs
-- went through sessions_mv). The DELETE is a mutation of the parts there now; the INSERT's part
-- comes after it and is not touched by it (as erase_rebuild.sql).
ALTER TABLE sessions DELETE WHERE (app_id, session_id) IN {sessions:Array(Tuple(String, String))}
SETTINGS mutations_sync = 0;
INSERT INTO sessions
SELECT session_id, user_id, app_id, country, is_bot, min(dt) AS started, max(dt) AS ended, count() AS events
FROM events
WHERE dt >= {from:DateTime64(3, 'UTC')} AND dt <= {to:DateTime64(3, 'UTC')}
  AND (app_id, session_id) IN {sessions:Array(Tuple(String, String))}
GROUP BY session_id, user_id, app_id, country, is_bot
SETTINGS insert_deduplicate = 0;
