-- Events per hour and name in the range, from the hourly rollup. Hours are UTC hours; in a zone
-- whose offset is not whole hours (Asia/Kolkata), a day's first and last hour straddle its edges.
SELECT hour, event, sum(events) AS events
FROM event_counts_hourly
WHERE hour >= fromUnixTimestamp64Milli({start_ms:Int64}, 'UTC')
  AND hour < fromUnixTimestamp64Milli({end_ms:Int64}, 'UTC')
  AND ({app_id:String} = '' OR app_id = {app_id:String})
  AND ({country:String} = '' OR country = {country:String})
  AND ({bots:UInt8} = 1 OR is_bot = 0)
  AND ({event:String} = '' OR event = {event:String})
GROUP BY hour, event
ORDER BY hour, event
