-- DAU, WAU (7 days) and MAU (30 days) for the {report_days} days from {from} (at most 35: 29 days of
-- lookback + 35 fit in 64 bits), in time zone {tz}. Per user, a 64-bit mask of the days they
-- were active on (bit 0 = the lookback's first day), from `events` itself; then for
-- each day the users with that day's bit (DAU), or any of the last 7 or 30 days' bits. Used for
-- the `event` filter and for zones whose days do not start on whole UTC hours (Asia/Kolkata).
SELECT toDate({lookback_day:String}) + 29 + i AS date,
       countIf(bitTest(mask, 29 + i)) AS dau,
       countIf(bitAnd(bitShiftRight(mask, 23 + i), 127) != 0) AS wau,
       countIf(bitAnd(bitShiftRight(mask, i), 1073741823) != 0) AS mau
FROM
(
    SELECT user_id, groupBitOr(bitShiftLeft(toUInt64(1), toUInt8(toDate(dt, {tz:String}) - toDate({lookback_day:String})))) AS mask
    FROM events
    WHERE dt >= fromUnixTimestamp64Milli({lookback_ms:Int64}, 'UTC')
      AND dt < fromUnixTimestamp64Milli({end_ms:Int64}, 'UTC')
      AND ({app_id:String} = '' OR app_id = {app_id:String})
      {{GROUP:user_id}}
      AND ({country:String} = '' OR country = {country:String})
      AND ({bots:UInt8} = 1 OR is_bot = 0)
      AND ({event:String} = '' OR event = {event:String})
    GROUP BY user_id
)
ARRAY JOIN range({report_days:UInt32}) AS i
GROUP BY date
ORDER BY date
