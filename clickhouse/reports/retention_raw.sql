-- Cohorts and their later activity as retention.sql, from `events`: for the `event` filter and
-- for zones whose days do not start on whole UTC hours (Asia/Kolkata).
SELECT cohort, intDiv(toUInt32(active - cohort), {period_days:UInt8}) AS periods_later, uniqExact(user) AS users
FROM
(
    SELECT c.user AS user,
           if({period_days:UInt8} = 7, toMonday(toDate(c.first, {tz:String})), toDate(c.first, {tz:String})) AS cohort,
           if({period_days:UInt8} = 7, toMonday(toDate(e.dt, {tz:String})), toDate(e.dt, {tz:String})) AS active
    FROM events AS e
    INNER JOIN
    (
        SELECT user, first
        FROM users_first_seen(app_id = {app_id:String}, country = {country:String}, event = {event:String}, bots = {bots:UInt8})
        WHERE first >= fromUnixTimestamp64Milli({start_ms:Int64}, 'UTC')
          AND first < fromUnixTimestamp64Milli({end_ms:Int64}, 'UTC')
    ) AS c ON sipHash64(e.user_id) = c.user
    WHERE e.dt >= fromUnixTimestamp64Milli({start_ms:Int64}, 'UTC')
      AND e.dt < fromUnixTimestamp64Milli({end_ms:Int64}, 'UTC')
      AND ({app_id:String} = '' OR e.app_id = {app_id:String})
      {{GROUP:e.user_id}}
      AND ({country:String} = '' OR e.country = {country:String})
      AND ({bots:UInt8} = 1 OR e.is_bot = 0)
      AND ({event:String} = '' OR e.event = {event:String})
)
GROUP BY cohort, periods_later
ORDER BY cohort, periods_later
