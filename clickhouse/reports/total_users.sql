-- Distinct users whose first event is before `end_ms` (within the app/country filter).
SELECT count()
FROM
(
    SELECT user_id, min(first_seen) AS first
    FROM user_first_seen
    WHERE ({app_id:String} = '' OR app_id = {app_id:String})
      AND ({country:String} = '' OR country = {country:String})
      AND ({event:String} = '' OR event = {event:String})
    GROUP BY user_id
)
WHERE first < fromUnixTimestamp64Milli({end_ms:Int64}, 'UTC')
