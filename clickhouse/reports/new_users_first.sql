-- Users whose first event ever falls on each date in {tz}, without a country or event filter:
-- straight from `users_first` (012_users_first.sql), which new_users.sql reaches through the
-- parameterized view `users_first_seen`; planning the view's other branch cost ~3.5 ms a query
-- (23.6 -> 20.1 ms at 10 M demo events).
SELECT toDate(first, {tz:String}) AS date, count() AS new_users
FROM
(
    SELECT user, min(first) AS first
    FROM users_first
    WHERE ({app_id:String} = '' OR app_id = {app_id:String})
      {{GROUP:user}}
      AND ({bots:UInt8} = 1 OR is_bot = 0)
    GROUP BY user
)
WHERE first >= fromUnixTimestamp64Milli({start_ms:Int64}, 'UTC')
  AND first < fromUnixTimestamp64Milli({end_ms:Int64}, 'UTC')
GROUP BY date
ORDER BY date
