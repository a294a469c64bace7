-- The Buffer table the batcher writes to: it absorbs many small INSERTs in memory and flushes
-- them into `events` as one part when all minimums or any maximum is reached.
-- The {{BUFFER_*}} thresholds are filled in from settings (see server/config.py); changing a
-- setting recreates this table at the next start, after flushing it (server/db.py).
-- Rows held here live in memory: see the README's "Guarantees" for what a crash loses.
CREATE TABLE IF NOT EXISTS events_buffer AS events
ENGINE = Buffer(
    currentDatabase(), events,
    {{BUFFER_LAYERS}},
    {{BUFFER_MIN_SECONDS}}, {{BUFFER_MAX_SECONDS}},
    {{BUFFER_MIN_ROWS}}, {{BUFFER_MAX_ROWS}},
    {{BUFFER_MIN_BYTES}}, {{BUFFER_MAX_BYTES}}
);
