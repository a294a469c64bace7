-- Seed 003's `user_activities`: database change records sent by a backend. Each activity is one
-- row holding its operation, the table it names and its columns; values are kept as text in
-- their canonical form (validated against `col_types` before they get here).
CREATE TABLE IF NOT EXISTS activities
(
    activity_id  UUID,
    received_at  DateTime64(3, 'UTC'),
    operation    LowCardinality(String),
    target_table LowCardinality(String),
    col_names    Array(String),
    col_types    Array(LowCardinality(String)),
    col_values   Array(Nullable(String))
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY (target_table, received_at);
