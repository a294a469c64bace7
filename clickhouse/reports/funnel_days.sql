-- The rollup job's levels of a configured funnel (018_funnel_days.sql, server/reports/funnels.py)
-- on the days {from}..{to} of zone {tz}, for one app or all ({app_id} = ''), bots left out: per
-- day and user, the furthest level of the chains whose first step is on that day. A first step
-- counts on its own day only; a later step on each day whose end plus the window is after it:
-- its own day and those back to the day of its time less the window. {{STEP_CONDITIONS}} as in
-- funnel.sql; {step0} is the first step.
INSERT INTO funnel_days (report, key, day, batch, user, level)
SELECT {name:String}, {key:String}, day, {batch:UInt64}, user, level
FROM
(
    SELECT day, sipHash64(user_id) AS user,
           windowFunnel({window:UInt64})(toDateTime(dt, 'UTC'), {{STEP_CONDITIONS}}) AS level
    FROM events
    ARRAY JOIN if(event = {step0:String}, [toDate(dt, {tz:String})],
                  arrayMap(n -> toDate(dt, {tz:String}) - n,
                           range(toUInt32(toDate(dt, {tz:String}) - toDate(dt - toIntervalSecond({window:UInt64}), {tz:String})) + 1))) AS day
    WHERE dt >= fromUnixTimestamp64Milli({start_ms:Int64}, 'UTC')
      AND dt < fromUnixTimestamp64Milli({end_ms:Int64}, 'UTC') + toIntervalSecond({window:UInt64})
      AND event IN {steps:Array(String)}
      AND ({app_id:String} = '' OR app_id = {app_id:String})
      AND is_bot = 0
      AND day >= {from:Date} AND day <= {to:Date}
    GROUP BY day, user
)
WHERE level > 0
