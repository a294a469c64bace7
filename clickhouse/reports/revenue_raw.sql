-- Revenue per date in {tz} from `events` (revenue.sql reads the 15-minute rollup, which holds no
-- user): for a `group_id` filter, whose members are users.
SELECT toDate(dt, {tz:String}) AS date, sum(amount) AS revenue, uniqExactIf(user_id, amount > 0) AS paying_users
FROM events
WHERE amount != 0
  AND dt >= fromUnixTimestamp64Milli({start_ms:Int64}, 'UTC')
  AND dt < fromUnixTimestamp64Milli({end_ms:Int64}, 'UTC')
  AND ({app_id:String} = '' OR app_id = {app_id:String})
  AND ({country:String} = '' OR country = {country:String})
  AND ({bots:UInt8} = 1 OR is_bot = 0)
  AND ({event:String} = '' OR event = {event:String})
  {{GROUP:user_id}}
GROUP BY date
ORDER BY date
