-- Users whose first event ever (within the filters) falls on each date in {tz}.
SELECT toDate(first, {tz:String}) AS date, count() AS new_users
FROM users_first_seen(app_id = {app_id:String}, country = {country:String}, event = {event:String}, bots = {bots:UInt8})
WHERE first >= fromUnixTimestamp64Milli({start_ms:Int64}, 'UTC')
  AND first < fromUnixTimestamp64Milli({end_ms:Int64}, 'UTC')
  {{GROUP:user}}
GROUP BY date
ORDER BY date
