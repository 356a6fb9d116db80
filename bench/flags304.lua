-- wrk script: GET /v1/flags with the current ETag, so every answer is 304 Not Modified.
function init(args)
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("SERVER_KEY")
  wrk.headers["If-None-Match"] = os.getenv("ETAG")
end

function done(summary, latency, requests)
  io.write(string.format("p50 %.2f ms  p99 %.2f ms  max %.2f ms  non-2xx/3xx %d\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    summary.errors.status))
end
