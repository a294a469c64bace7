-- Deletes from `events` as patch parts (ClickHouse's lightweight updates): a stitch's DELETE of
-- the moved ids' originals (server/data/erase.py `lightweight`) is written and visible at once,
-- like an insert, instead of a mutation of every part (on the embedded engine ~0.2 s a part, in
-- the background: at 10 M demo events a stitch of 1,000 ids waited 131 s with the log's consumer
-- paused). The columns it needs (_block_number, _block_offset) are kept for new parts from now on.
-- The other tables' deletes stay mutations, waited for after the pause (a patch DELETE on
-- user_hours took 5 s at 2 M events; the Aggregating ones cannot take them). An erasure keeps
-- ALTER … DELETE (the rows leave the disk).
ALTER TABLE events MODIFY SETTING enable_block_number_column = 1, enable_block_offset_column = 1;
