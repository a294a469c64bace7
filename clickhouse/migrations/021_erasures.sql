-- Erasures under way (server/data/erase.py): before its first mutation an erasure records what it
-- will rebuild (the 15-minute buckets and hours of the user's events, their first time, their
-- count), and deletes the record after its last mutation, so no trace of the user is left. An
-- erasure cut by a crash is found here and run again with what it recorded (at the next start,
-- or when it is asked for again): the second run no longer finds the user's events, which the
-- first already deleted, so without the record it would not know which buckets to rebuild.
CREATE TABLE IF NOT EXISTS erasures
(
    user_id  String,
    app_id   String,
    buckets  Array(DateTime('UTC')),
    hours    Array(DateTime('UTC')),
    first_dt DateTime64(3, 'UTC'),
    rows     UInt64,
    begun    DateTime64(3, 'UTC')
)
ENGINE = MergeTree
ORDER BY (user_id, app_id);
