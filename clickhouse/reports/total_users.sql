-- Distinct users whose first event (within the filters) is before `end_ms`.
SELECT count()
FROM users_first_seen(app_id = {app_id:String}, country = {country:String}, event = {event:String}, bots = {bots:UInt8})
WHERE first < fromUnixTimestamp64Milli({end_ms:Int64}, 'UTC')
  {{GROUP:user}}
