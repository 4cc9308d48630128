-- wrk script for bench/batching.py and bench/io.py (bench/run.py uses wrk.lua).
--   BENCH_BODY_FILE  file with the request bodies: one per line (cycled, a different body per
--                    request), or the whole file as one body when BENCH_WHOLE=1
--   BENCH_CTYPE      Content-Type of the POST (default application/json)
--   BENCH_SLO_US     latency SLO in microseconds (default 50000): done() counts the requests
--                    that finished within it (from wrk's latency histogram, 1 us buckets)
-- done() prints one line "BENCH_JSON {...}".

local ctype = os.getenv("BENCH_CTYPE") or "application/json"
local file = os.getenv("BENCH_BODY_FILE")
local whole = os.getenv("BENCH_WHOLE") == "1"
local slo = tonumber(os.getenv("BENCH_SLO_US") or "50000")

wrk.method = "POST"
wrk.headers["Content-Type"] = ctype

local function read_all(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("*a")
  f:close()
  return s
end

if whole then
  wrk.body = read_all(file)
else
  local reqs, n, idx = nil, 0, 0
  function init(args)
    reqs = {}
    for line in io.lines(file) do
      if #line > 0 then
        n = n + 1
        reqs[n] = wrk.format("POST", nil, nil, line)
      end
    end
  end
  function request()
    idx = idx % n + 1
    return reqs[idx]
  end
end

function done(summary, latency, requests)
  local within = 0
  local total = 0
  -- latency(i) -> (value in us, count) of the i-th populated histogram entry
  for i = 1, #latency do
    local v, c = latency(i)
    total = total + c
    if v <= slo then within = within + c end
  end
  local e = summary.errors
  local parts = {
    string.format('"duration_us":%d', summary.duration),
    string.format('"requests":%d', summary.requests),
    string.format('"bytes":%d', summary.bytes),
    string.format('"err_connect":%d', e.connect),
    string.format('"err_read":%d', e.read),
    string.format('"err_write":%d', e.write),
    string.format('"err_status":%d', e.status),
    string.format('"err_timeout":%d', e.timeout),
    string.format('"within_slo":%d', within),
    string.format('"hist_total":%d', total),
    string.format('"lat_mean_us":%.1f', latency.mean),
    string.format('"lat_max_us":%d', latency.max),
  }
  for _, p in ipairs({50, 90, 99, 99.9}) do
    table.insert(parts, string.format('"p%s_us":%d', tostring(p):gsub("%.", "_"), latency:percentile(p)))
  end
  io.write("BENCH_JSON {" .. table.concat(parts, ",") .. "}\n")
end
