-- wrk script for bench/http.py: POST bodies with a distinct targeting id per request,
-- optionally paced to a fixed rate, and a JSON summary line at the end.
--
--   wrk -t1 -c64 -d10s -s load.lua URL -- KIND RATE THREADS
--
-- KIND: edge (POST /v1/decide), ofrep (OFREP bulk), unleash (POST /proxy/all), floor.
-- RATE: requests/s for the whole run, 0 = as fast as the connections go (closed loop).
-- THREADS: wrk's -t (the rate is shared between the threads).
--
-- Ids are "<thread>-<counter>", so no two requests carry the same targeting key; country,
-- platform and dwell time cycle with the counter (as bench/servers/flagsets.py's contexts).
--
-- Pacing (wrk 4.1 has no fixed-rate mode; that is wrk2): each thread keeps a schedule of send
-- slots 1/RATE apart. When a connection has its response, delay() hands it the next free slot
-- and wrk waits until then (ms timer granularity; the schedule keeps the mean exact). If a slot
-- is already past when claimed — every connection was busy, the server fell behind — the send
-- goes at once and the slot counts as late: wrk measures latency from the actual send, so late
-- slots are where coordinated omission would hide, and the summary reports how many there were
-- and how late the worst one was.

local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]])
local ts = ffi.new("bench_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local COUNTRIES = { "US", "CA", "GB", "DE", "FR", "BR", "IN", "JP" }
local PLATFORMS = { "ios", "android", "web" }

local TEMPLATES = {
  edge = '{"context":{"targetingKey":"%s","country":"%s","platform":"%s","dwell_s":%d}}',
  ofrep = '{"context":{"targetingKey":"%s","country":"%s","platform":"%s","dwell_s":%d}}',
  floor = '{"context":{"targetingKey":"%s","country":"%s","platform":"%s","dwell_s":%d}}',
  unleash = '{"context":{"userId":"%s","properties":'
    .. '{"country":"%s","platform":"%s","dwell_s":"%d"}}}',
}

-- main thread: hand each worker thread an index; keep the threads for done()
local threads = {}
local thread_count = 0

function setup(thread)
  thread:set("thread_index", thread_count)
  thread_count = thread_count + 1
  table.insert(threads, thread)
end

-- worker threads
local template
local prefix
local counter = 0
local interval_ms
local next_slot
late = 0
max_late_ms = 0
sent = 0

local function paced_delay()
  local t = now_ms()
  if next_slot == nil then
    next_slot = t
  end
  next_slot = next_slot + interval_ms
  local wait = next_slot - t
  if wait < 0 then
    late = late + 1
    if -wait > max_late_ms then
      max_late_ms = -wait
    end
    return 0
  end
  return wait
end

function init(args)
  local kind = args[1] or "edge"
  local rate = tonumber(args[2] or "0")
  local n_threads = tonumber(args[3] or "1")
  template = TEMPLATES[kind]
  if template == nil then
    error("unknown kind " .. kind)
  end
  prefix = "t" .. tostring(thread_index or 0) .. "-"
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  if kind == "unleash" then
    wrk.headers["Authorization"] = "bench-key"
  end
  if rate > 0 then
    interval_ms = 1000.0 * n_threads / rate
    delay = paced_delay
  end
end

function request()
  counter = counter + 1
  sent = sent + 1
  local body = string.format(
    template,
    prefix .. counter,
    COUNTRIES[counter % 8 + 1],
    PLATFORMS[counter % 3 + 1],
    counter % 120
  )
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  local total_late, worst_late = 0, 0
  for _, thread in ipairs(threads) do
    total_late = total_late + (thread:get("late") or 0)
    local w = thread:get("max_late_ms") or 0
    if w > worst_late then
      worst_late = w
    end
  end
  local e = summary.errors
  io.write(
    string.format(
      "BENCH-JSON "
        .. '{"requests":%d,"duration_us":%d,"bytes":%d,'
        .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
        .. '"latency_us":{"mean":%.1f,"stdev":%.1f,"max":%d,'
        .. '"p50":%d,"p90":%d,"p99":%d,"p999":%d},'
        .. '"late_slots":%d,"max_late_ms":%.3f}\n',
      summary.requests,
      summary.duration,
      summary.bytes,
      e.connect,
      e.read,
      e.write,
      e.status,
      e.timeout,
      latency.mean,
      latency.stdev,
      latency.max,
      latency:percentile(50),
      latency:percentile(90),
      latency:percentile(99),
      latency:percentile(99.9),
      total_late,
      worst_late
    )
  )
end
