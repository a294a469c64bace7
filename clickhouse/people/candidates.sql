-- The joins of `identities` (020) inserted since {since} and not yet decided (`identity_merges`,
-- 022), oldest first: the stitch job (server/people/stitch.py) decides them in this order. At
-- most {limit} a round. The decided ones are looked up by their anonymous ids (the table's key).
SELECT app_id, anonymous_id, user_id, min(first_seen) AS first
FROM identities
WHERE inserted >= {since:DateTime64(3, 'UTC')}
  AND (app_id, anonymous_id, user_id) NOT IN (
      SELECT app_id, anonymous_id, user_id
      FROM identity_merges
      WHERE (app_id, anonymous_id) IN (SELECT app_id, anonymous_id FROM identities WHERE inserted >= {since:DateTime64(3, 'UTC')}))
GROUP BY app_id, anonymous_id, user_id
ORDER BY first, app_id, anonymous_id, user_id
LIMIT {limit:UInt32}
