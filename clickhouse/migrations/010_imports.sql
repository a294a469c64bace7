-- Imports (`analytics-api import`, server/importer.py): one row per batch of a file stored, by the
-- file's SHA-256. A batch found here is not stored again, so importing a file twice, or again
-- after Ctrl-C or a crash, stores each event once. A crash between a batch's INSERT and its row
-- here re-sends the batch with the same insert_deduplication_token, which `events` and its views
-- drop (006_exactly_once.sql).
CREATE TABLE IF NOT EXISTS imports
(
    file_sha256 String,
    batch       UInt32,
    first_line  UInt64,
    lines       UInt64,
    rows        UInt64,
    file_name   String,
    imported_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (file_sha256, batch);
