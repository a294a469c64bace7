-- Mean session length (last event − first event, seconds) over the sessions that start on each
-- date in {tz}, from the session spans (clickhouse/migrations/013_session_spans_v2.sql): a named
-- session is its spans' (per UTC day) first to last; without a session_id, a user's spans (merged
-- per 30-minute bucket) are cut where the next bucket's first event is more than 30 minutes after
-- the last one's (exactly the sessions of cutting the raw events; session_durations_raw.sql does
-- that). Spans up to a day after `to` are read, so sessions keep their true end (a session longer
-- than a day would be cut); from the UTC day before `from` for named sessions, so those begun
-- before it keep their true start (and are not counted), and from the 30-minute bucket before
-- `from` for the others: a span before that bucket ends more than 30 minutes before `from`, so it
-- cannot join a session that starts in the range, and one that joins the bucket's span began
-- before `from` whatever came earlier (two days at 10 M demo events: 28-32 -> 21 ms, the same
-- answers in UTC, Asia/Kolkata and New York).
SELECT toDate(started, {tz:String}) AS date,
       avg(dateDiff('millisecond', started, ended)) / 1000 AS average_seconds,
       count() AS session_count
FROM
(
    SELECT min(first) AS started, max(last) AS ended
    FROM session_spans_v2
    WHERE session != 0
      AND bucket >= toStartOfDay(fromUnixTimestamp64Milli({start_ms:Int64} - 86400000, 'UTC'))
      AND bucket < fromUnixTimestamp64Milli({end_ms:Int64} + 86400000, 'UTC')
      AND ({app_id:String} = '' OR app_id = {app_id:String})
      {{GROUP:user}}
      AND ({country:String} = '' OR country = {country:String})
      AND ({bots:UInt8} = 1 OR is_bot = 0)
    GROUP BY user, session
    UNION ALL
    -- Per user, the spans in time order, split where a span's first event is more than 30
    -- minutes after the previous span's last (arraySplit; spans of different buckets do not
    -- overlap): each piece is a session, from its first span's first event to its last span's
    -- last (array functions: ~2x faster here than window functions over the spans). ARRAY JOIN
    -- rather than arrayJoin() under aliases, which the engine planned as copies of the whole
    -- expression (two days at 10 M demo events: planning 18 -> 13 ms, 33 -> 28 ms in all).
    SELECT pieces[1].1 AS started, pieces[-1].2 AS ended
    FROM
    (
        SELECT arraySort(groupArray((first, last))) AS spans
        FROM
        (
            SELECT user, bucket, min(first) AS first, max(last) AS last
            FROM session_spans_v2
            WHERE session = 0
              AND bucket >= toStartOfInterval(fromUnixTimestamp64Milli({start_ms:Int64} - 1800000, 'UTC'), INTERVAL 30 MINUTE)
              AND bucket < fromUnixTimestamp64Milli({end_ms:Int64} + 86400000, 'UTC')
              AND ({app_id:String} = '' OR app_id = {app_id:String})
              {{GROUP:user}}
              AND ({country:String} = '' OR country = {country:String})
              AND ({bots:UInt8} = 1 OR is_bot = 0)
            GROUP BY user, bucket
        )
        GROUP BY user
    )
    ARRAY JOIN arraySplit((span, cut) -> cut, spans,
                          arrayMap((span, previous) -> dateDiff('millisecond', previous.2, span.1) > 1800000,
                                   spans, arrayPushFront(arrayPopBack(spans), spans[1]))) AS pieces
)
WHERE started >= fromUnixTimestamp64Milli({start_ms:Int64}, 'UTC')
  AND started < fromUnixTimestamp64Milli({end_ms:Int64}, 'UTC')
GROUP BY date
ORDER BY date
