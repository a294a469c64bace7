-- Visitors (distinct user_id) and events per value of one column in the range: the top {limit}
-- values by visitors (then events, then the value), and the rest as one row (rest = 1) whose
-- visitors are counted once across all its values. {by:Identifier} is bound, and only names a
-- column from the route's allow-list (server/reports/routes.py). Reads raw events.
WITH filtered AS
(
    SELECT toString({by:Identifier}) AS value, user_id
    FROM events
    WHERE dt >= fromUnixTimestamp64Milli({start_ms:Int64}, 'UTC')
      AND dt < fromUnixTimestamp64Milli({end_ms:Int64}, 'UTC')
      AND ({app_id:String} = '' OR app_id = {app_id:String})
      AND ({country:String} = '' OR country = {country:String})
      AND ({bots:UInt8} = 1 OR is_bot = 0)
      AND ({event:String} = '' OR event = {event:String})
),
top AS
(
    SELECT value, uniqExact(user_id) AS visitors, count() AS events
    FROM filtered
    GROUP BY value
    ORDER BY visitors DESC, events DESC, value
    LIMIT {limit:UInt32}
)
SELECT value, visitors, events, 0 AS rest FROM top
UNION ALL
SELECT '', uniqExact(user_id), count(), 1 FROM filtered WHERE value NOT IN (SELECT value FROM top)
