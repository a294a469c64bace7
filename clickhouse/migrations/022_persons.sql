-- One person per human (server/people/): the joins of `identities` (020) decided, in the order
-- the stitch job reads them, and each joined id's person.
--
-- `identity_merges`: one row per identities row decided: `joined` (the anonymous id's person,
-- with every id already theirs, became the user's person), `refused` (its person was already
-- identified: another id had been joined to it; IDENTITY_MERGE_IDENTIFIED=true joins them), or
-- `same` (already one person).
CREATE TABLE IF NOT EXISTS identity_merges
(
    app_id       LowCardinality(String),
    anonymous_id String,
    user_id      String,
    first_seen   DateTime64(3, 'UTC'),
    outcome      LowCardinality(String),
    decided      DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree
ORDER BY (app_id, anonymous_id, user_id);

-- `persons`: every id joined to a person, and that person (an id never joined is its own
-- person). The newest `version` wins (read with FINAL): a person joined to another moves every
-- id of theirs. The events of an id are moved to its person by the stitch job, so `events`, the
-- rollups and the stored days count people.
CREATE TABLE IF NOT EXISTS persons
(
    app_id  LowCardinality(String),
    id      String,
    person  String,
    version UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (app_id, id);

-- A stitch's removal of the ids whose events it copied to their person is recorded as an
-- erasure's is (021), marked: a crash after the copy is finished by the next round.
ALTER TABLE erasures ADD COLUMN IF NOT EXISTS stitch UInt8 DEFAULT 0;
