-- Demo data made inside ClickHouse (no Python per row) that looks like a product's:
--
-- * growth: user u arrives on day floor(days * sqrt(h)), h uniform, so more users arrive each
--   day than the day before, and new users appear every day;
-- * churn: each session of a user falls floor(-6 ln(h)) days after their arrival (exponential,
--   mean 6 days), so users come back less and less: a retention triangle;
-- * sessions of 1 to 8 steps (view, start_task, finish_task, pay, …), skewed short: a funnel
--   with drop-off; steps 20 s to 10 min apart; half the sessions carry a session_id;
-- * one user in ten is a payer, whose long sessions end with `pay` of a varied amount;
-- * each user has one app (ios, android, web) and one country (weighted); web users have a
--   browser, OS and device, and their first view of a session a referrer and UTM source;
-- * a task number in `props` on start_task; 1% of web sessions are a crawler's (is_bot = 1).
--
-- A session is 8 slots of `numbers()`; sessions that would fall after now are dropped, and
-- {scan} numbers are read to reach {events} rows. Rows go into `events`, so the views fire.
INSERT INTO events (dt, received_at, event, user_id, session_id, screen, elem, amount, app_id, type, country, region,
                    city, props, browser, browser_version, os, device_type, is_bot, referrer, referrer_domain,
                    utm_source, utm_medium, utm_campaign)
SELECT
    toDateTime64(start + step * (20 + cityHash64(session, step) % 580), 3, 'UTC') AS dt,
    now64(3) AS received_at,
    if(step = 7 AND payer = 0, 'view',
       ['view', 'view', 'start_task', 'view', 'finish_task', 'view', 'view', 'pay'][step + 1]) AS event,
    if(bot = 1, concat('v:bot', toString(session % 50)), concat('demo-u', toString(user))) AS user_id,
    if(session % 2 = 0, concat('demo-s', toString(session)), '') AS session_id,
    ['main', 'course', 'task', 'task', 'task', 'course', 'payment', 'payment'][step + 1] AS screen,
    ['screen', 'screen', 'start_button', 'screen', 'finish_button', 'screen', 'screen', 'pay_button'][step + 1] AS elem,
    if(step = 7 AND payer = 1, toInt64(99 + cityHash64(session, 'amount') % 4900), 0) AS amount,
    app AS app_id,
    'event' AS type,
    ['US', 'US', 'US', 'DE', 'DE', 'TR', 'BR', 'IN', 'GB', 'FR'][cityHash64(user, 'country') % 10 + 1] AS country,
    '' AS region,
    '' AS city,
    if(step = 2, map('task', toString(cityHash64(session, 'task') % 20)), map()) AS props,
    if(bot = 1, 'Googlebot', if(app = 'web', ['Chrome', 'Chrome', 'Safari', 'Firefox', 'Edge'][cityHash64(user, 'b') % 5 + 1],
       if(app = 'ios', 'Mobile Safari', 'Chrome Mobile'))) AS browser,
    if(bot = 1, '2.1', toString(120 + cityHash64(user, 'v') % 12)) AS browser_version,
    if(bot = 1, '', if(app = 'web', ['Windows', 'Mac OS X', 'Windows', 'Linux', 'Mac OS X'][cityHash64(user, 'o') % 5 + 1],
       if(app = 'ios', 'iOS', 'Android'))) AS os,
    if(bot = 1, 'bot', if(app = 'web', 'desktop', if(cityHash64(user, 'tablet') % 8 = 0, 'tablet', 'mobile'))) AS device_type,
    bot AS is_bot,
    if(step = 0 AND app = 'web', ['', 'https://www.google.com/', 'https://www.google.com/', 'https://news.ycombinator.com/',
       'https://t.co/x', 'https://github.com/'][cityHash64(session, 'ref') % 6 + 1], '') AS referrer,
    if(step = 0 AND app = 'web', ['', 'google.com', 'google.com', 'news.ycombinator.com', 't.co', 'github.com'][
       cityHash64(session, 'ref') % 6 + 1], '') AS referrer_domain,
    if(step = 0 AND app = 'web', ['', '', '', 'newsletter', 'ads'][cityHash64(session, 'utm') % 5 + 1], '') AS utm_source,
    if(utm_source = 'newsletter', 'email', if(utm_source = 'ads', 'cpc', '')) AS utm_medium,
    if(utm_source != '', ['launch', 'winter-sale'][cityHash64(session, 'campaign') % 2 + 1], '') AS utm_campaign
FROM
(
    SELECT
        intDiv(number, 8) AS session,
        number % 8 AS step,
        cityHash64(session, 'user') % {users:UInt64} AS user,
        toUInt32(floor({days:UInt32} * sqrt((cityHash64(user, 'arrival') % 1000000) / 1000000))) AS arrival_day,
        arrival_day + toUInt32(floor(-6 * log(1 - (cityHash64(session, 'return') % 1000000) / 1000001))) AS session_day,
        toUInt32(toStartOfDay(now())) - ({days:UInt32} - 1) * 86400 + session_day * 86400
            + cityHash64(session, 'start') % 86400 AS start,
        -- session length 1..8, skewed short: most users drop off early
        1 + toUInt8(floor(8 * pow((cityHash64(session, 'length') % 1000) / 1000, 2))) AS length,
        toUInt8(cityHash64(user, 'payer') % 10 = 0) AS payer,
        ['ios', 'android', 'web', 'web'][cityHash64(user, 'app') % 4 + 1] AS app,
        toUInt8(app = 'web' AND cityHash64(session, 'bot') % 100 = 0) AS bot
    FROM numbers({scan:UInt64})
)
WHERE step < length AND session_day < {days:UInt32} AND start + 8 * 600 < toUInt32(now())
LIMIT {events:UInt64}
