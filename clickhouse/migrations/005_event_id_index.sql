-- A bloom filter on event_id, so that "is this event_id stored already?" reads a few granules
-- instead of the whole column. Both idempotent retries (clients resending events with the same
-- event_id) and the outage spool's replays ask it before inserting (server/ingest/dedup.py).
-- Measured on 10 million rows (embedded): 100 unknown ids answered in ~4 ms with the index,
-- ~180 ms without. Parts written before this migration are indexed by the MATERIALIZE mutation
-- (synchronous on the embedded engine, in the background on a server); until then they are read
-- in full, which is slower but gives the same answer.
ALTER TABLE events ADD INDEX IF NOT EXISTS event_id_bloom event_id TYPE bloom_filter(0.001) GRANULARITY 1;
ALTER TABLE events MATERIALIZE INDEX event_id_bloom;
