-- new_users_first.sql for a range of a few days (today's new users, mostly): only the users with a
-- first event in the range can be new in it, so each user's first event over all apps is looked
-- up for them alone instead of grouping every user ever. At 10 M demo events one day 21 -> 12 ms,
-- four days 18 -> 13 ms; from a week on no faster (server/reports/queries.py picks).
SELECT toDate(first, {tz:String}) AS date, count() AS new_users
FROM
(
    SELECT user, min(first) AS first
    FROM users_first
    WHERE ({app_id:String} = '' OR app_id = {app_id:String})
      {{GROUP:user}}
      AND ({bots:UInt8} = 1 OR is_bot = 0)
      AND user IN
      (
          SELECT user
          FROM users_first
          WHERE first >= fromUnixTimestamp64Milli({start_ms:Int64}, 'UTC')
            AND first < fromUnixTimestamp64Milli({end_ms:Int64}, 'UTC')
            AND ({app_id:String} = '' OR app_id = {app_id:String})
            {{GROUP:user}}
            AND ({bots:UInt8} = 1 OR is_bot = 0)
      )
    GROUP BY user
)
WHERE first >= fromUnixTimestamp64Milli({start_ms:Int64}, 'UTC')
  AND first < fromUnixTimestamp64Milli({end_ms:Int64}, 'UTC')
GROUP BY date
ORDER BY date
