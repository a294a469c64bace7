-- Events of the range and filters, for GET /export and `analytics-api export`: every stored
-- column (the client IP is stored nowhere), unsorted, so that ClickHouse streams them as it reads
-- them instead of sorting the whole range first.
SELECT event_id, dt, received_at, event, user_id, session_id, screen, elem, amount, app_id, type, country, region,
       city, props, browser, browser_version, os, device_type, is_bot, referrer, referrer_domain, utm_source,
       utm_medium, utm_campaign, utm_term, utm_content
FROM events
WHERE dt >= fromUnixTimestamp64Milli({start_ms:Int64}, 'UTC')
  AND dt < fromUnixTimestamp64Milli({end_ms:Int64}, 'UTC')
  AND ({app_id:String} = '' OR app_id = {app_id:String})
  AND ({country:String} = '' OR country = {country:String})
  AND ({event:String} = '' OR event = {event:String})
  AND ({bots:UInt8} = 1 OR is_bot = 0)
