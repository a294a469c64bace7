-- Users whose first event ever (within the app/country filter) falls on each date in {tz}.
SELECT toDate(first, {tz:String}) AS date, count() AS new_users
FROM
(
    SELECT user_id, min(first_seen) AS first
    FROM user_first_seen
    WHERE ({app_id:String} = '' OR app_id = {app_id:String})
      AND ({country:String} = '' OR country = {country:String})
      AND ({event:String} = '' OR event = {event:String})
    GROUP BY user_id
)
WHERE first >= fromUnixTimestamp64Milli({start_ms:Int64}, 'UTC')
  AND first < fromUnixTimestamp64Milli({end_ms:Int64}, 'UTC')
GROUP BY date
ORDER BY date
