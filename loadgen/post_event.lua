-- wrk script: POST one JSON event per request (or BATCH events as an array).
-- With RATE set, requests are paced to RATE a second across the thread's connections
-- (wrk has no constant-rate mode and Debian ships no wrk2): each request takes the next slot
-- of a schedule read from the monotonic clock; a server that falls behind gets at most 100 ms
-- of catch-up, after which the schedule slips (the rate held is what wrk measures).
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

local rate = tonumber(os.getenv("RATE") or "0")
if rate > 0 then
  local ffi = require("ffi")
  ffi.cdef[[ typedef struct { long tv_sec; long tv_nsec; } wrk_timespec; int clock_gettime(int, wrk_timespec *); ]]
  local ts = ffi.new("wrk_timespec")
  local function now_ms()
    ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
    return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
  end
  local interval = 1000 / rate
  local next_at = nil
  function delay()
    local now = now_ms()
    if next_at == nil or next_at < now - 100 then next_at = now end
    next_at = next_at + interval
    local wait = next_at - now
    if wait < 0 then return 0 end
    return math.floor(wait)
  end
end
