-- A configured funnel over a range from its stored days (funnel_days.sql) and the others at once:
-- per user, the highest level of the stored days' rows ({batches}: each day's batch of rows) and
-- of the chains whose first step is on a day not stored, from the first such day ({live_ms}) to
-- the range's end ({stored_days}: the stored days after it, whose first steps are left out:
-- their chains are in the rows). Then users per level, as funnel.sql. {{STEP_CONDITIONS}} as there.
SELECT reached, count() AS users
FROM
(
    SELECT user, max(level) AS reached
    FROM
    (
        SELECT user, level
        FROM funnel_days
        WHERE report = {name:String} AND key = {key:String} AND day >= {from:Date} AND day <= {to:Date}
          AND (day, batch) IN {batches:Array(Tuple(Date, UInt64))}
        UNION ALL
        SELECT sipHash64(user_id) AS user,
               windowFunnel({window:UInt64})(toDateTime(dt, 'UTC'), {{STEP_CONDITIONS}}) AS level
        FROM events
        WHERE dt >= fromUnixTimestamp64Milli({live_ms:Int64}, 'UTC')
          AND dt < fromUnixTimestamp64Milli({end_ms:Int64}, 'UTC')
          AND event IN {steps:Array(String)}
          AND (event != {step0:String} OR NOT has({stored_days:Array(Date)}, toDate(dt, {tz:String})))
          AND ({app_id:String} = '' OR app_id = {app_id:String})
          AND ({country:String} = '' OR country = {country:String})
          AND ({bots:UInt8} = 1 OR is_bot = 0)
        GROUP BY user
    )
    GROUP BY user
)
GROUP BY reached
ORDER BY reached
