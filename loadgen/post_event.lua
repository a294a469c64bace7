-- wrk script: POST one JSON event per request (or BATCH events as an array).
local batch = tonumber(os.getenv("BATCH") or "1")
local one = '{"dt":"2025-03-01T11:11:11Z","event":"view","user_id":"u1","screen":"main","elem":"screen","amount":0}'
local body
if batch == 1 then
  body = one
else
  local items = {}
  for i = 1, batch do items[i] = one end
  body = "[" .. table.concat(items, ",") .. "]"
end
wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
