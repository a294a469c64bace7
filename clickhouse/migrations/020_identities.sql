-- Who is one person, their latest traits, and their groups: views over the identity calls that
-- the peers' SDKs send (server/sdks/): identify, alias, PostHog's $identify and $create_alias,
-- Umami's identify, and any event that names both its user and an anonymous id (`POST /events`
-- with `anonymous_id`, a Segment track with userId and anonymousId). The calls themselves are
-- events (`$identify`, `$alias`, `$group`): acknowledged through the write-ahead log and stored
-- exactly once like any other, erased with their user (clickhouse/erase/erase_user.sql).
--
-- `identities`: one row per (app, anonymous id, user id) ever joined, the earliest time seen.
-- Rows may repeat before merges; readers take DISTINCT or FINAL.
CREATE TABLE IF NOT EXISTS identities
(
    app_id       LowCardinality(String),
    anonymous_id String,
    user_id      String,
    first_seen   DateTime64(3, 'UTC'),
    source       LowCardinality(String)
)
ENGINE = ReplacingMergeTree
ORDER BY (app_id, anonymous_id, user_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS identities_mv TO identities AS
SELECT app_id, props['anonymous_id'] AS anonymous_id, user_id, min(dt) AS first_seen, any(event) AS source
FROM events
WHERE props['anonymous_id'] != '' AND props['anonymous_id'] != user_id
GROUP BY app_id, anonymous_id, user_id;

INSERT INTO identities
SELECT app_id, props['anonymous_id'] AS anonymous_id, user_id, min(dt) AS first_seen, any(event) AS source
FROM events
WHERE props['anonymous_id'] != '' AND props['anonymous_id'] != user_id
GROUP BY app_id, anonymous_id, user_id;

-- `person_traits`: the traits of each user's latest identify call (the newest `updated` wins at
-- merges; read with FINAL). SQL and Grafana join it to `events` on (app_id, user_id).
CREATE TABLE IF NOT EXISTS person_traits
(
    app_id  LowCardinality(String),
    user_id String,
    traits  Map(String, String),
    updated DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated)
ORDER BY (app_id, user_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS person_traits_mv TO person_traits AS
SELECT app_id, user_id, mapFilter((k, v) -> k NOT IN ('anonymous_id', 'url', 'library'), props) AS traits, dt AS updated
FROM events
WHERE event = '$identify';

INSERT INTO person_traits
SELECT app_id, user_id, mapFilter((k, v) -> k NOT IN ('anonymous_id', 'url', 'library'), props) AS traits, dt AS updated
FROM events
WHERE event = '$identify';

-- `group_members`: every (group, user) a group call joined, with the group's latest traits.
CREATE TABLE IF NOT EXISTS group_members
(
    app_id     LowCardinality(String),
    group_type LowCardinality(String),
    group_id   String,
    user_id    String,
    traits     Map(String, String),
    updated    DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(updated)
ORDER BY (app_id, group_type, group_id, user_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS group_members_mv TO group_members AS
SELECT app_id, if(props['group_type'] = '', 'group', props['group_type']) AS group_type, props['group_id'] AS group_id,
       user_id, mapFilter((k, v) -> k NOT IN ('group_id', 'group_type', 'anonymous_id', 'url', 'library'), props) AS traits,
       dt AS updated
FROM events
WHERE event = '$group' AND props['group_id'] != '';

INSERT INTO group_members
SELECT app_id, if(props['group_type'] = '', 'group', props['group_type']) AS group_type, props['group_id'] AS group_id,
       user_id, mapFilter((k, v) -> k NOT IN ('group_id', 'group_type', 'anonymous_id', 'url', 'library'), props) AS traits,
       dt AS updated
FROM events
WHERE event = '$group' AND props['group_id'] != '';

-- Exactly once from the log (006_exactly_once.sql): every view's target keeps its block hashes.
ALTER TABLE identities MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE person_traits MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE group_members MODIFY SETTING non_replicated_deduplication_window = 1000;
