-- Mean session length per date in {tz}, cutting the raw events: the definition the session spans
-- (session_durations.sql) must equal; tests/reports/test_seed_demo.py compares the two on demo
-- data. Named sessions from the `sessions` rollup; events without a session_id are cut where a
-- user's events are more than 30 minutes apart, read from a day before `from` to a day after `to`.
SELECT toDate(started, {tz:String}) AS date,
       avg(dateDiff('millisecond', started, ended)) / 1000 AS average_seconds,
       count() AS session_count
FROM
(
    SELECT min(started) AS started, max(ended) AS ended
    FROM sessions
    WHERE sessions.started >= fromUnixTimestamp64Milli({start_ms:Int64} - 86400000, 'UTC')
      AND sessions.started < fromUnixTimestamp64Milli({end_ms:Int64} + 86400000, 'UTC')
      AND ({app_id:String} = '' OR app_id = {app_id:String})
      AND ({country:String} = '' OR country = {country:String})
      AND ({bots:UInt8} = 1 OR is_bot = 0)
    GROUP BY session_id, user_id
    UNION ALL
    SELECT min(dt) AS started, max(dt) AS ended
    FROM
    (
        SELECT user_id, dt,
               sum(is_start) OVER (PARTITION BY user_id ORDER BY dt ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS session_number
        FROM
        (
            SELECT user_id, dt,
                   dateDiff('millisecond',
                            lagInFrame(dt, 1, toDateTime64(0, 3, 'UTC')) OVER (PARTITION BY user_id ORDER BY dt ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW),
                            dt) > 1800000 AS is_start
            FROM events
            WHERE session_id = ''
              AND dt >= fromUnixTimestamp64Milli({start_ms:Int64} - 86400000, 'UTC')
              AND dt < fromUnixTimestamp64Milli({end_ms:Int64} + 86400000, 'UTC')
              AND ({app_id:String} = '' OR app_id = {app_id:String})
              AND ({country:String} = '' OR country = {country:String})
              AND ({bots:UInt8} = 1 OR is_bot = 0)
        )
    )
    GROUP BY user_id, session_number
)
WHERE started >= fromUnixTimestamp64Milli({start_ms:Int64}, 'UTC')
  AND started < fromUnixTimestamp64Milli({end_ms:Int64}, 'UTC')
GROUP BY date
ORDER BY date
