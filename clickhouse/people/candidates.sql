-- The joins of `identities` (020) not yet decided (`identity_merges`, 022), oldest first: the
-- stitch job (server/people/stitch.py) decides them in this order. At most {limit} a round.
SELECT app_id, anonymous_id, user_id, min(first_seen) AS first
FROM identities
WHERE (app_id, anonymous_id, user_id) NOT IN (SELECT app_id, anonymous_id, user_id FROM identity_merges)
GROUP BY app_id, anonymous_id, user_id
ORDER BY first, app_id, anonymous_id, user_id
LIMIT {limit:UInt32}
