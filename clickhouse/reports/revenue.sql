-- Revenue per date in {tz}: sum of amount and exact paying users (amount > 0).
SELECT toDate(bucket, {tz:String}) AS date, sum(revenue) AS revenue, uniqExactIfMerge(payers) AS paying_users
FROM revenue_15m
WHERE bucket >= fromUnixTimestamp64Milli({start_ms:Int64}, 'UTC')
  AND bucket < fromUnixTimestamp64Milli({end_ms:Int64}, 'UTC')
  AND ({app_id:String} = '' OR app_id = {app_id:String})
  AND ({country:String} = '' OR country = {country:String})
  AND ({bots:UInt8} = 1 OR is_bot = 0)
  AND ({event:String} = '' OR event = {event:String})
GROUP BY date
ORDER BY date
