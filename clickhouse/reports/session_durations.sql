-- Mean session length (last event − first event, seconds) over the sessions that start on each
-- date in {tz}. Named sessions come from the `sessions` rollup; events without a session_id are
-- cut into sessions here: a gap of more than 30 minutes in a user's events starts a new one.
-- Those events are read from a day before `from` to a day after `to`, so sessions that cross the
-- range's edges keep their true start and end (a session longer than a day would be cut). The
-- named sessions' partial rows are read from the same window, so only the range's sessions are
-- grouped, not every session ever stored.
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
