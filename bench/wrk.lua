-- wrk script used by bench/run.py.
--   BENCH_METHOD  GET or POST (default POST)
--   BENCH_BODY    request body for POST (default {"name":"bench"})
--   BENCH_STRICT  "1": check every response (2xx, and body contains BENCH_EXPECT);
--                 this costs client CPU, so bench/run.py only uses it for the warm-up.
-- The done() hook prints one line "BENCH_JSON {...}" with the summary and the
-- latency percentiles in microseconds.

local method = os.getenv("BENCH_METHOD") or "POST"
wrk.method = method
if method == "POST" then
  wrk.body = os.getenv("BENCH_BODY") or '{"name":"bench"}'
  wrk.headers["Content-Type"] = "application/json"
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  bad_status = 0
  bad_body = 0
  checked = 0
end

if os.getenv("BENCH_STRICT") == "1" then
  local expect = os.getenv("BENCH_EXPECT") or ""
  function response(status, headers, body)
    checked = checked + 1
    if status < 200 or status > 299 then
      bad_status = bad_status + 1
    elseif expect ~= "" and not string.find(body, expect, 1, true) then
      bad_body = bad_body + 1
    end
  end
end

function done(summary, latency, requests)
  local bs, bb, ck = 0, 0, 0
  for _, t in ipairs(threads) do
    bs = bs + (t:get("bad_status") or 0)
    bb = bb + (t:get("bad_body") or 0)
    ck = ck + (t:get("checked") or 0)
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
    string.format('"strict_checked":%d', ck),
    string.format('"strict_bad_status":%d', bs),
    string.format('"strict_bad_body":%d', bb),
    string.format('"lat_mean_us":%.1f', latency.mean),
    string.format('"lat_stdev_us":%.1f', latency.stdev),
    string.format('"lat_min_us":%d', latency.min),
    string.format('"lat_max_us":%d', latency.max),
  }
  for _, p in ipairs({50, 90, 99, 99.9}) do
    table.insert(parts, string.format('"p%s_us":%d', tostring(p):gsub("%.", "_"), latency:percentile(p)))
  end
  io.write("BENCH_JSON {" .. table.concat(parts, ",") .. "}\n")
end
