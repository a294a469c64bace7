-- Distinct users whose first event is before `end_ms`, without a country or event filter:
-- straight from `users_first`, as new_users_first.sql (total_users.sql goes through the view).
SELECT count()
FROM
(
    SELECT user, min(first) AS first
    FROM users_first
    WHERE ({app_id:String} = '' OR app_id = {app_id:String})
      {{GROUP:user}}
      AND ({bots:UInt8} = 1 OR is_bot = 0)
    GROUP BY user
)
WHERE first < fromUnixTimestamp64Milli({end_ms:Int64}, 'UTC')
