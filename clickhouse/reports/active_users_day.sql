-- DAU, WAU (7 days) and MAU (30 days) of the one day {from} in time zone {tz}: the users whose
-- latest event is in the day, or in the 7 or 30 days ending with it, from users_last
-- (015_users_last.sql). True when no user has an event after the day's end (today's, usually):
-- `ahead` says whether one has, and then the caller asks active_users_day_ahead.sql instead.
-- For a single day without a country or event filter (server/reports/queries.py).
WITH fromUnixTimestamp64Milli({start_ms:Int64}, 'UTC') AS day_start,
     fromUnixTimestamp64Milli({week_ms:Int64}, 'UTC') AS week_start,
     fromUnixTimestamp64Milli({month_ms:Int64}, 'UTC') AS month_start
SELECT toDate({from:String}) AS date, countIf(latest >= day_start) AS dau, countIf(latest >= week_start) AS wau,
       count() AS mau, max(latest) >= fromUnixTimestamp64Milli({end_ms:Int64}, 'UTC') AS ahead
FROM
(
    SELECT user, max(last) AS latest
    FROM users_last
    WHERE last >= month_start
      AND ({app_id:String} = '' OR app_id = {app_id:String})
      {{GROUP:user}}
      AND ({bots:UInt8} = 1 OR is_bot = 0)
    GROUP BY user
)
