-- A wrk script for examples/http_service: policy decisions spread over
-- 1,000 policy ids and 4 subjects (4,000 keys; the first request of each is
-- a miss, the rest hit the cache).
--   wrk -t2 -c32 -d10s -s scripts/wrk_decisions.lua http://127.0.0.1:3000
local subjects = { "alice", "bob", "carol", "guest-7" }
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end

function init(args)
  -- Each wrk thread has its own Lua state: seed them apart.
  math.randomseed(os.time() * 1000 + id)
end

function request()
  local path = string.format("/policies/%d/decision?subject=%s",
    math.random(1, 1000), subjects[math.random(1, #subjects)])
  return wrk.format("GET", path)
end
