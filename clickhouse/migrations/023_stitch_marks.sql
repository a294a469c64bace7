-- What the stitch job (server/people/stitch.py) reads each round, kept small: the rows of
-- `identities` and the ids of `events` inserted since its last round, instead of every join
-- decided and every id with events (at 1 M identities and 10 M events, a round that looked at all
-- of them took 1.8 s with nothing to do).
--
-- `identities.inserted`: when the row was inserted (rows from before this migration: now).
ALTER TABLE identities ADD COLUMN IF NOT EXISTS inserted DateTime64(3, 'UTC') DEFAULT now64(3, 'UTC');
ALTER TABLE identities MATERIALIZE COLUMN inserted;

-- `ids_seen`: each (app, id) of each block inserted into `events`, with the time of the insert;
-- two days kept (a round looks at the last minute; a full look, at start and hourly, reads
-- users_first).
CREATE TABLE IF NOT EXISTS ids_seen
(
    inserted DateTime64(3, 'UTC'),
    app_id   LowCardinality(String),
    user_id  String
)
ENGINE = MergeTree
ORDER BY (inserted, app_id, user_id)
TTL toDateTime(inserted) + INTERVAL 2 DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS ids_seen_mv TO ids_seen AS
SELECT max(now64(3, 'UTC')) AS inserted, app_id, user_id
FROM events
GROUP BY app_id, user_id;

ALTER TABLE ids_seen MODIFY SETTING non_replicated_deduplication_window = 1000;
