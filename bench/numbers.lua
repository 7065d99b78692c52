-- wrk script: POST to the URL and keep every number the server answers.
--
--   WRK_OUT=/tmp/out.txt wrk -t2 -c100 -d5s -s bench/numbers.lua URL
--
-- Each wrk thread keeps its own numbers (``"value": N`` in a 200 answer) and
-- counts the other answers by status; when the run ends, ``done`` collects
-- every thread's and writes them to WRK_OUT: ``key value`` lines, then one
-- number a line after ``numbers``. bench/run.py counts duplicates and gaps
-- from them, so a fast wrong answer cannot pass as a fast right one.
--
-- WRK_VISITORS names a file of ``cookie<TAB>csrftoken`` lines: each request
-- then carries the next visitor's session and CSRF token, for the per-user
-- counter.

-- WRK_METHOD=GET asks for a page instead (bench/fairness.py).
wrk.method = os.getenv("WRK_METHOD") or "POST"

numbers = {}
statuses = {}

local visitors = {}
local next_visitor = 1

function init(args)
  local path = os.getenv("WRK_VISITORS")
  if path then
    for line in io.lines(path) do
      local cookie, token = line:match("^(.-)\t(.*)$")
      visitors[#visitors + 1] = { Cookie = cookie, ["X-CSRFToken"] = token }
    end
    -- Threads start at different visitors, so they do not move in step.
    next_visitor = (offset or 0) * 7 % #visitors + 1
  end
end

function request()
  if #visitors == 0 then
    return wrk.format()
  end
  local headers = visitors[next_visitor]
  next_visitor = next_visitor % #visitors + 1
  return wrk.format(nil, nil, headers)
end

function response(status, headers, body)
  local number = status == 200 and body:match('"value":%s*(%-?%d+)')
  if number then
    numbers[#numbers + 1] = number
  else
    statuses[status] = (statuses[status] or 0) + 1
  end
end

local threads = {}

function setup(thread)
  thread:set("offset", #threads)
  threads[#threads + 1] = thread
end

function done(summary, latency, requests)
  local out = assert(io.open(assert(os.getenv("WRK_OUT"), "set WRK_OUT"), "w"))
  out:write("requests ", summary.requests, "\n")
  out:write("duration_us ", summary.duration, "\n")
  for _, kind in ipairs({ "connect", "read", "write", "timeout" }) do
    out:write("socket_", kind, " ", summary.errors[kind], "\n")
  end
  for _, share in ipairs({ 50, 99 }) do
    out:write("p", share, "_us ", latency:percentile(share), "\n")
  end
  out:write("max_us ", latency.max, "\n")
  local kept = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      out:write("status_", status, " ", count, "\n")
    end
    for _, number in ipairs(thread:get("numbers")) do
      kept[#kept + 1] = number
    end
  end
  out:write("numbers\n", table.concat(kept, "\n"), "\n")
  out:close()
end
