-- wrk script of the benchmark: requests spread over many apps.
--
--     wrk ... -s bench.lua URL -- TOKENS ADDRESSES PATH SEED
--
-- TOKENS has one access token per line (one per app), ADDRESSES one
-- client address per line, sent as X-Forwarded-For.  The requests are
-- formatted once, in init, in a random order that the seed fixes; each
-- request then costs wrk one table lookup, not a wrk.format call, so the
-- script does not slow the load generator down.  done() prints one line
-- for run.sh to read.

local requests = {}
local count = 0
local next_request = 0


local function read_lines(file)
    local lines = {}

    for line in io.lines(file) do
        if line ~= "" then
            lines[#lines + 1] = line
        end
    end

    assert(#lines > 0, file .. " is empty")

    return lines
end


function init(args)
    local tokens = read_lines(args[1])
    local addresses = read_lines(args[2])
    local path = args[3]

    math.randomseed(tonumber(args[4]) or 1)

    count = math.max(10 * #tokens, 10000)

    for i = 1, count do
        requests[i] = wrk.format("GET", path, {
            ["Host"] = "fhir.bench",
            ["Accept"] = "application/fhir+json",
            ["Authorization"] = "Bearer " .. tokens[math.random(#tokens)],
            ["X-Forwarded-For"] = addresses[math.random(#addresses)],
        })
    end
end


function request()
    next_request = next_request + 1

    if next_request > count then
        next_request = 1
    end

    return requests[next_request]
end


function done(summary, latency, requests)
    local e = summary.errors

    io.write(string.format(
        "BENCH requests=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d "
        .. "max_us=%d connect=%d read=%d write=%d status=%d timeout=%d\n",
        summary.requests, summary.duration,
        latency:percentile(50), latency:percentile(90),
        latency:percentile(99), latency.max,
        e.connect, e.read, e.write, e.status, e.timeout))
end
