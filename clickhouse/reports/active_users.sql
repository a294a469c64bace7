-- DAU, WAU (7 days) and MAU (30 days) ending on each date, in time zone {tz}, merged exactly
-- from the 15-minute user states. Days with no activity get an empty state so that the rolling
-- windows still cover them. Reads from `lookback_ms` (29 days before `from`) for the windows.
SELECT date, dau, wau, mau
FROM
(
    SELECT
        date,
        uniqExactMerge(day_users) OVER (ORDER BY date RANGE BETWEEN CURRENT ROW AND CURRENT ROW) AS dau,
        uniqExactMerge(day_users) OVER (ORDER BY date RANGE BETWEEN 6 PRECEDING AND CURRENT ROW) AS wau,
        uniqExactMerge(day_users) OVER (ORDER BY date RANGE BETWEEN 29 PRECEDING AND CURRENT ROW) AS mau
    FROM
    (
        SELECT date, uniqExactMergeState(users) AS day_users
        FROM
        (
            SELECT toDate(bucket, {tz:String}) AS date, users
            FROM active_users_15m
            WHERE bucket >= fromUnixTimestamp64Milli({lookback_ms:Int64}, 'UTC')
              AND bucket < fromUnixTimestamp64Milli({end_ms:Int64}, 'UTC')
              AND ({app_id:String} = '' OR app_id = {app_id:String})
              AND ({country:String} = '' OR country = {country:String})
              AND ({bots:UInt8} = 1 OR is_bot = 0)
              AND ({event:String} = '' OR event = {event:String})
            UNION ALL
            SELECT toDate({lookback_day:String}) + number AS date, arrayReduce('uniqExactState', emptyArrayString()) AS users
            FROM numbers({days_with_lookback:UInt32})
        )
        GROUP BY date
    )
)
WHERE date >= toDate({from:String}) AND date <= toDate({to:String})
ORDER BY date
