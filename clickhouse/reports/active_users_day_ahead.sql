-- DAU, WAU (7 days) and MAU (30 days) of the one day {from} in time zone {tz} when some users
-- have events after the day's end (events are accepted up to MAX_FUTURE_SECONDS ahead): as
-- active_users_day.sql for the others; for those, their latest active hour before the day's end,
-- from user_hours. Only in zones whose days start on whole UTC hours (server/reports/queries.py).
WITH fromUnixTimestamp64Milli({start_ms:Int64}, 'UTC') AS day_start,
     fromUnixTimestamp64Milli({end_ms:Int64}, 'UTC') AS day_end,
     fromUnixTimestamp64Milli({week_ms:Int64}, 'UTC') AS week_start,
     fromUnixTimestamp64Milli({month_ms:Int64}, 'UTC') AS month_start
SELECT toDate({from:String}) AS date, countIf(latest >= day_start) AS dau, countIf(latest >= week_start) AS wau,
       count() AS mau
FROM
(
    SELECT user, max(last) AS latest
    FROM users_last
    WHERE last >= month_start
      AND ({app_id:String} = '' OR app_id = {app_id:String})
      {{GROUP:user}}
      AND ({bots:UInt8} = 1 OR is_bot = 0)
    GROUP BY user
    HAVING latest < day_end
    UNION ALL
    SELECT user, toDateTime64(max(hour), 3, 'UTC') AS latest
    FROM user_hours
    WHERE hour >= month_start AND hour < day_end
      AND ({app_id:String} = '' OR app_id = {app_id:String})
      {{GROUP:user}}
      AND ({bots:UInt8} = 1 OR is_bot = 0)
      AND user IN (SELECT user FROM users_last
                   WHERE last >= day_end
                     AND ({app_id:String} = '' OR app_id = {app_id:String})
                     AND ({bots:UInt8} = 1 OR is_bot = 0))
    GROUP BY user
)
