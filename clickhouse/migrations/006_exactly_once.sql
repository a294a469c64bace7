-- Exactly-once inserts from the write-ahead log (server/ingest/consumer.py).
--
-- Each INSERT of a log range carries `insert_deduplication_token` naming that range; a range
-- re-sent after a crash is then dropped by `events`, and, with
-- `deduplicate_blocks_in_dependent_materialized_views = 1` on the INSERT, by every view's target
-- table too, each of which must keep the hashes of its recent blocks as well: without the window
-- on the rollups a re-sent range was dropped from `events` but counted again by the views
-- (measured on chDB). Non-replicated MergeTree keeps no hashes by default (window 0). 1000 blocks
-- is hundreds of batches; recovery only ever re-sends the last one.
ALTER TABLE events MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE active_users_15m MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE user_first_seen MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE sessions MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE event_counts_hourly MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE revenue_15m MODIFY SETTING non_replicated_deduplication_window = 1000;
