-- Demo data made inside ClickHouse (no Python per row), like seed 004's generator: sessions of
-- simulated users walking view → start_task → finish_task → pay, with drop-off after each step.
-- A session is 8 slots of `numbers()`; a hash of the session picks its length, so later steps
-- are rarer. Times fall in the {days} days before now. Rows go into `events`, so the views fire.
INSERT INTO events (dt, received_at, event, user_id, session_id, screen, elem, amount, app_id, type, country, region, city)
SELECT
    toDateTime64(start + step * (20 + cityHash64(session, step) % 600), 3, 'UTC') AS dt,
    now64(3) AS received_at,
    ['view', 'view', 'start_task', 'view', 'finish_task', 'view', 'view', 'pay'][step + 1] AS event,
    concat('demo-u', toString(cityHash64(session, 'user') % {users:UInt64})) AS user_id,
    if(session % 2 = 0, concat('demo-s', toString(session)), '') AS session_id,
    ['main', 'course', 'task', 'task', 'task', 'course', 'payment', 'payment'][step + 1] AS screen,
    ['screen', 'screen', 'start_button', 'screen', 'finish_button', 'screen', 'screen', 'pay_button'][step + 1] AS elem,
    if(step = 7, [100, 250, 500, 1000][cityHash64(session, 'amount') % 4 + 1], 0) AS amount,
    ['ios', 'android', 'web'][cityHash64(session, 'app') % 3 + 1] AS app_id,
    'event' AS type,
    ['TR', 'DE', 'US', 'RU', 'BR'][cityHash64(session, 'country') % 5 + 1] AS country,
    '' AS region,
    '' AS city
FROM
(
    SELECT
        intDiv(number, 8) AS session,
        number % 8 AS step,
        toUInt32(now()) - {days:UInt32} * 86400 + cityHash64(intDiv(number, 8), 'start') % ({days:UInt32} * 86400) AS start,
        -- session length 1..8, skewed short: most users drop off early
        1 + toUInt8(floor(8 * pow((cityHash64(intDiv(number, 8), 'length') % 1000) / 1000, 2))) AS length
    FROM numbers({scan:UInt64})
)
WHERE step < length
LIMIT {events:UInt64}
