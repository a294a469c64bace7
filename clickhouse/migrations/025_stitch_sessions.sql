-- A stitch's removal (server/data/erase.py, for server/people/stitch.py) records, with each id, the
-- sessions of its events, (app_id, session_id), and the span of times of every event of the moved
-- sessions (from `sessions`' rows, read before they are deleted): their rows of `sessions` are
-- rebuilt from `events` in that span (clickhouse/people/rebuild_sessions.sql), so that a copy a
-- crash cut short and made again (its rows counted twice there) leaves each session's count exact.
-- A removal cut by a crash is run again with what it recorded.
ALTER TABLE erasures ADD COLUMN IF NOT EXISTS sessions Array(Tuple(String, String)),
    ADD COLUMN IF NOT EXISTS sessions_from DateTime64(3, 'UTC'),
    ADD COLUMN IF NOT EXISTS sessions_to DateTime64(3, 'UTC');
