-- The rollup job's rows of a configured breakdown (019_breakdown_days.sql,
-- server/reports/breakdowns.py) on the days {from}..{to} of zone {tz}, for one app or all
-- ({app_id} = ''), bots left out: per day, value of column {by} and user, the user's events.
INSERT INTO breakdown_days (report, key, day, batch, value, user, events)
SELECT {name:String}, {key:String}, toDate(dt, {tz:String}) AS day, {batch:UInt64},
       toString({by:Identifier}) AS value, sipHash64(user_id) AS user, count() AS events
FROM events
WHERE dt >= fromUnixTimestamp64Milli({start_ms:Int64}, 'UTC')
  AND dt < fromUnixTimestamp64Milli({end_ms:Int64}, 'UTC')
  AND ({app_id:String} = '' OR app_id = {app_id:String})
  AND is_bot = 0
GROUP BY day, value, user
