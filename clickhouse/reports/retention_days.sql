-- retention.sql for a zone whose days are UTC days (UTC, the default) and no country or event
-- filter: activity from the daily table (017_user_days.sql: half the rows of user_hours over a
-- range; at 10 M demo events weekly retention 54 -> 39 ms) and cohorts straight from
-- `users_first` (as new_users_first.sql: the view's other branch cost ~3.5 ms of planning). Kept
-- apart from retention.sql rather than one query over either table: cohorts of users first seen
-- in each period (day, or week from Monday) of the range, and how many of them were active in
-- each later period of the range.
SELECT cohort, intDiv(toUInt32(active - cohort), {period_days:UInt8}) AS periods_later, uniqExact(user) AS users
FROM
(
    SELECT h.user AS user, c.cohort AS cohort,
           if({period_days:UInt8} = 7, toMonday(h.day), h.day) AS active
    FROM user_days AS h
    INNER JOIN
    (
        SELECT user,
               if({period_days:UInt8} = 7, toMonday(toDate(first, {tz:String})), toDate(first, {tz:String})) AS cohort
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
    ) AS c ON h.user = c.user
    WHERE h.day >= {from:Date}
      AND h.day <= {to:Date}
      AND ({app_id:String} = '' OR h.app_id = {app_id:String})
      {{GROUP:h.user}}
      AND ({bots:UInt8} = 1 OR h.is_bot = 0)
)
GROUP BY cohort, periods_later
ORDER BY cohort, periods_later
