-- wrk script for bench/ingest.py: POST pre-signed Shopify webhooks, each with its own order id.
--
--   wrk -t T -c C -d D -s bench/wrk_bodies.lua URL -- BODIES_FILE SHOP TOPIC T
--
-- BODIES_FILE holds one "signature<TAB>body" per line (bench/benchlib.py writes it). Thread i
-- of T keeps lines i, i+T, i+2T... so no two threads send the same order, and every request
-- is pre-formatted in init() so request() costs nothing. A thread that has sent all its lines
-- starts over (duplicates, which ingest.py counts and reports). done() prints one JSON line
-- starting with BENCH_RESULT for ingest.py to read.

local thread_counter = 0

function setup(thread)
  thread:set("thread_index", thread_counter)
  thread_counter = thread_counter + 1
end

function init(args)
  local path, shop, topic, thread_count = args[1], args[2], args[3], tonumber(args[4])
  prepared = {}
  position = 0
  local line_number = 0
  for line in io.lines(path) do
    if line_number % thread_count == thread_index then
      local tab = line:find("\t", 1, true)
      prepared[#prepared + 1] = wrk.format("POST", nil, {
        ["Content-Type"] = "application/json",
        ["X-Shopify-Topic"] = topic,
        ["X-Shopify-Shop-Domain"] = shop,
        ["X-Shopify-Hmac-Sha256"] = line:sub(1, tab - 1),
      }, line:sub(tab + 1))
    end
    line_number = line_number + 1
  end
end

function request()
  position = position % #prepared + 1
  return prepared[position]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "duration_us": %d, "bytes": %d, "connect_errors": %d, '
      .. '"read_errors": %d, "write_errors": %d, "status_errors": %d, "timeouts": %d, '
      .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
