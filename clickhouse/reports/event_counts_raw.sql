-- Events per hour and name from `events` (event_counts.sql reads the hourly rollup, which holds
-- no user): for a `group_id` filter, whose members are users.
SELECT toStartOfHour(toDateTime(dt, 'UTC')) AS hour, event, count() AS events
FROM events
WHERE dt >= fromUnixTimestamp64Milli({start_ms:Int64}, 'UTC')
  AND dt < fromUnixTimestamp64Milli({end_ms:Int64}, 'UTC')
  AND ({app_id:String} = '' OR app_id = {app_id:String})
  AND ({country:String} = '' OR country = {country:String})
  AND ({bots:UInt8} = 1 OR is_bot = 0)
  AND ({event:String} = '' OR event = {event:String})
  {{GROUP:user_id}}
GROUP BY hour, event
ORDER BY hour, event
