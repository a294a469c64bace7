-- A configured breakdown over a range from its stored days (breakdown_days.sql) and the others
-- at once: the stored days' rows ({batches}: each day's batch) and the events of the days not
-- stored, from the first of them ({live_ms}) to the range's end, less those of the stored days
-- after it ({stored_days}), then ranked and the rest merged as breakdown.sql does. Users are
-- sipHash64(user_id), as stored.
SELECT if(top, value, '') AS shown, uniqExactMerge(users) AS visitors, sum(events) AS events, NOT top AS rest
FROM
(
    SELECT value, users, events,
           row_number() OVER (ORDER BY finalizeAggregation(users) DESC, events DESC, value) <= {limit:UInt32} AS top
    FROM
    (
        SELECT value, uniqExactState(user) AS users, sum(events) AS events
        FROM
        (
            SELECT value, user, events
            FROM breakdown_days
            WHERE report = {name:String} AND key = {key:String} AND day >= {from:Date} AND day <= {to:Date}
              AND (day, batch) IN {batches:Array(Tuple(Date, UInt64))}
            UNION ALL
            SELECT toString({by:Identifier}) AS value, sipHash64(user_id) AS user, toUInt32(1) AS events
            FROM events
            WHERE dt >= fromUnixTimestamp64Milli({live_ms:Int64}, 'UTC')
              AND dt < fromUnixTimestamp64Milli({end_ms:Int64}, 'UTC')
              AND NOT has({stored_days:Array(Date)}, toDate(dt, {tz:String}))
              AND ({app_id:String} = '' OR app_id = {app_id:String})
              AND ({bots:UInt8} = 1 OR is_bot = 0)
        )
        GROUP BY value
    )
)
GROUP BY shown, rest
