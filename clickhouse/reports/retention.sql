-- Cohorts: users first seen in each period (day, or week from Monday, in {tz}) of the range,
-- and how many of them were active in each later period of the range. Activity comes from the
-- hourly activity table (users as sipHash64(user_id), see 008_user_hours.sql); used when every
-- day of {tz} starts on a whole UTC hour and no event is filtered, else retention_raw.sql.
SELECT cohort, intDiv(toUInt32(active - cohort), {period_days:UInt8}) AS periods_later, uniqExact(user) AS users
FROM
(
    SELECT h.user AS user, c.cohort AS cohort,
           if({period_days:UInt8} = 7, toMonday(toDate(h.hour, {tz:String})), toDate(h.hour, {tz:String})) AS active
    FROM user_hours AS h
    INNER JOIN
    (
        SELECT user,
               if({period_days:UInt8} = 7, toMonday(toDate(first, {tz:String})), toDate(first, {tz:String})) AS cohort
        FROM users_first_seen(app_id = {app_id:String}, country = {country:String}, event = {event:String}, bots = {bots:UInt8})
        WHERE first >= fromUnixTimestamp64Milli({start_ms:Int64}, 'UTC')
          AND first < fromUnixTimestamp64Milli({end_ms:Int64}, 'UTC')
    ) AS c ON h.user = c.user
    WHERE h.hour >= fromUnixTimestamp64Milli({start_ms:Int64}, 'UTC')
      AND h.hour < fromUnixTimestamp64Milli({end_ms:Int64}, 'UTC')
      AND ({app_id:String} = '' OR h.app_id = {app_id:String})
      {{GROUP:h.user}}
      AND ({country:String} = '' OR h.country = {country:String})
      AND ({bots:UInt8} = 1 OR h.is_bot = 0)
)
GROUP BY cohort, periods_later
ORDER BY cohort, periods_later
