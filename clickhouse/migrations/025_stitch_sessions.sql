-- A stitch's removal (server/data/erase.py, for server/people/stitch.py) records the sessions of
-- the events it moves, (app_id, session_id), next to their buckets and hours: their rows of
-- `sessions` are rebuilt from `events` (clickhouse/people/rebuild_sessions.sql), so that a copy
-- a crash cut short and made again (its rows counted twice there) leaves each session's count
-- exact. A removal cut by a crash is run again with what it recorded.
ALTER TABLE erasures ADD COLUMN IF NOT EXISTS sessions Array(Tuple(String, String));
