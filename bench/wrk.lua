-- wrk's script, filled in by bench/load.py: one fixed body, or (with laps) a new body every
-- request, each practice lap moved by up to +-$jitter s. done() prints one WRK-JSON line.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [==[$body]==]
local laps = {$laps}
math.randomseed($seed)
if #laps > 0 then
  function request()
    local v = {}
    for i, t in ipairs(laps) do
      v[i] = string.format("%.3f", t + (math.random() - 0.5) * 2 * $jitter)
    end
    return wrk.format(nil, nil, nil, string.format(wrk.body, unpack(v)))
  end
end
function done(summary, latency, requests)
  local pct = {}
  for _, p in ipairs({$percentiles}) do
    pct[#pct + 1] = string.format('"%d": %.6f', p, latency:percentile(p) / 1e6)
  end
  local e = summary.errors
  io.write(string.format(
    'WRK-JSON {"duration_s": %.6f, "requests": %d, "status_errors": %d, "connect": %d, ' ..
    '"read": %d, "write": %d, "timeout": %d, "min_s": %.6f, "max_s": %.6f, ' ..
    '"mean_s": %.6f, "percentiles_s": {%s}}\n',
    summary.duration / 1e6, summary.requests, e.status, e.connect, e.read, e.write, e.timeout,
    latency.min / 1e6, latency.max / 1e6, latency.mean / 1e6, table.concat(pct, ", ")))
end
