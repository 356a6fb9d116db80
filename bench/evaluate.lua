-- wrk script: POST /v1/evaluate of every flag for a different context each request.
-- SERVER_KEY comes from the environment; each wrk thread numbers its own users.
local countries = {"DE", "FR", "US", "GB", "JP"}
local plans = {"free", "pro", "enterprise"}
local thread_id = 0
local counter = 0

function setup(thread)
  thread_id = thread_id + 1
  thread:set("offset", thread_id * 100000000)
end

function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("SERVER_KEY")
end

function request()
  counter = counter + 1
  local user = (offset or 0) + counter
  local body = string.format(
    '{"context":{"targetingKey":"user-%d","country":"%s","plan":"%s","age":%d,"version":"2.%d.0"}}',
    user, countries[user % #countries + 1], plans[user % #plans + 1], 18 + user % 60, user % 12)
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  io.write(string.format("p50 %.2f ms  p99 %.2f ms  max %.2f ms  non-2xx %d\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    summary.errors.status))
end
